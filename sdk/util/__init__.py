"""`flux.util`: helpers shared by Flux commands and tools (the names flux-core's
flux.util offers): output formats (`OutputFormat`, `UtilFormatter`), durations and
datetimes (`fsd`, `parse_fsd`, `parse_datetime`), per-user tool configuration
(`UtilConfig`), argparse actions and `CLIMain`.
"""

from flux.util.cli import (
    CLIMain,
    FilterAction,
    FilterActionSetUpdate,
    FilterActionUser,
    FilterTrueAction,
    TreedictAction,
    YesNoAction,
    help_formatter,
)
from flux.util.config import UtilConfig
from flux.util.format import (
    AltField,
    OutputFormat,
    UtilDatetime,
    UtilFormatter,
    empty_outputs,
    fsd,
    wcswidth,
)
from flux.util.parse import (
    del_treedict,
    get_treedict,
    parse_datetime,
    parse_fsd,
    set_treedict,
)

__all__ = [
    "AltField", "CLIMain", "FilterAction", "FilterActionSetUpdate", "FilterActionUser",
    "FilterTrueAction", "OutputFormat", "TreedictAction", "UtilConfig", "UtilDatetime",
    "UtilFormatter", "YesNoAction", "del_treedict", "empty_outputs", "fsd", "get_treedict",
    "help_formatter", "parse_datetime", "parse_fsd", "set_treedict", "wcswidth",
]
