"""The DEEP Open Catalogue: metadata checks, the sharded index, the importer and the web app."""
