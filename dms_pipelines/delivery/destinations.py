"""Build a marketplace's configured destination (a local folder, or an SFTP server) from the configuration."""

import os

from dms_pipelines.config import ConfigError, HttpApiDestination, LocalDestination, Marketplace, SftpUploadDestination
from dms_pipelines.delivery.retry import RetryPolicy
from dms_pipelines.delivery.snapshot import Destination, LocalFolder
from dms_pipelines.delivery.stock_api import StockApiClient
from dms_pipelines.paths import DataPaths


def destination_for(marketplace: Marketplace, paths: DataPaths) -> Destination:
    target = marketplace.destination
    if isinstance(target, LocalDestination):
        return LocalFolder(paths.resolve(target.path))
    if isinstance(target, SftpUploadDestination):
        from dms_pipelines.delivery.sftp_upload import SftpDestination

        return SftpDestination.from_config(target, paths)
    raise ValueError(f"a {target.kind} destination takes API calls, not files")


def api_client_for(marketplace: Marketplace, environ=None) -> StockApiClient:
    """The stock API client for an http_api destination, with its token read from the named variable."""
    target = marketplace.destination
    if not isinstance(target, HttpApiDestination):
        raise ValueError(f"a {target.kind} destination is not an API")
    environ = os.environ if environ is None else environ
    token = environ.get(target.token_env)
    if not token:
        raise ConfigError(f"marketplaces.*.destination.token_env: environment variable {target.token_env} is not set")
    policy = RetryPolicy(max_attempts=target.max_attempts, max_delay=target.max_retry_delay_seconds)
    return StockApiClient(target.resolved_base_url(environ), token, timeout=target.timeout_seconds, policy=policy)
