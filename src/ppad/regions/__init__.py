"""Position regions (prompt phrase + mask), radiological side convention."""

from ppad.regions.regions import (
    PATCH_RULES,
    PPAD_REGIONS,
    REGION_SETS,
    SIDES,
    WHOLE_IMAGE,
    Region,
    RegionSet,
    get_region_set,
)

__all__ = [
    "PATCH_RULES",
    "PPAD_REGIONS",
    "REGION_SETS",
    "SIDES",
    "WHOLE_IMAGE",
    "Region",
    "RegionSet",
    "get_region_set",
]
