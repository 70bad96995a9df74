"""Where DMS exports come from: the local inbox, SFTP servers, readiness and landing."""
