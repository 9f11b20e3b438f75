"""`nft -j list table` output as {set or map name: elements}: what the daemon picks up
after a restart (NftTable.elements) and what the tests look at in the kernel."""

from __future__ import annotations

import json
from typing import Dict, List, Union


def table_elements(json_text: Union[str, bytes]) -> Dict[str, List]:
    """Each set's and map's elements as nft's JSON gives them ([] when it has none)."""
    out: Dict[str, List] = {}
    for item in json.loads(json_text).get("nftables", []):
        for kind in ("map", "set"):
            if kind in item:
                out[item[kind]["name"]] = item[kind].get("elem", [])
    return out
