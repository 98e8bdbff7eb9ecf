"""Exporters: one module per format behind one protocol (see :mod:`.base`)."""

from edgekit.convert.exporters.base import REGISTRY, ExportResult, Exporter, check_target, exporter_names, get_exporter

__all__ = ["REGISTRY", "ExportResult", "Exporter", "check_target", "exporter_names", "get_exporter"]
