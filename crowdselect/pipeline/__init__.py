"""`crowdselect run`: the resumable pipeline ingest -> generate -> reward -> crowd -> select -> train."""
