"""The service in a PACS: a DICOMweb client (pull studies, store results), the routing rules of
studies pushed to the service, and the jobs that tie them together."""
