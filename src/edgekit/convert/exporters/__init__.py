"""Exporters: one module per format behind one protocol (see :mod:`.base`); which class exports
which format is read from :data:`edgekit.formats.FORMATS`."""

from edgekit.convert.exporters.base import (EXPORTERS, ExporterBase, ExportResult, Exporter, Int8Search, Option,
                                            check_options, check_target, exporter_names, get_exporter,
                                            supports_int8_search)

__all__ = ["EXPORTERS", "ExportResult", "Exporter", "ExporterBase", "Int8Search", "Option", "check_options",
           "check_target", "exporter_names", "get_exporter", "supports_int8_search"]
