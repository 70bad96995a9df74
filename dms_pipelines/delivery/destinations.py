"""Build a marketplace's configured destination (a local folder, or an SFTP server) from the configuration."""

from dms_pipelines.config import LocalDestination, Marketplace
from dms_pipelines.delivery.snapshot import Destination, LocalFolder
from dms_pipelines.paths import DataPaths


def destination_for(marketplace: Marketplace, paths: DataPaths) -> Destination:
    target = marketplace.destination
    if isinstance(target, LocalDestination):
        return LocalFolder(paths.resolve(target.path))
    from dms_pipelines.delivery.sftp_upload import SftpDestination

    return SftpDestination.from_config(target, paths)
