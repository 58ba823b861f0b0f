"""Position regions (prompt phrase + mask), radiological side convention; ``lungs``: each film's lung fields."""

from ppad.regions.regions import (
    LUNG_REGIONS,
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
    "LUNG_REGIONS",
    "PATCH_RULES",
    "PPAD_REGIONS",
    "REGION_SETS",
    "SIDES",
    "WHOLE_IMAGE",
    "Region",
    "RegionSet",
    "get_region_set",
]
