"""The EPJ simulator: a FHIR R4 server that plays the sandbox municipalities' patient records."""
