"""Position regions (prompt phrase + mask), radiological side convention."""

from ppad.regions.regions import PPAD_REGIONS, REGION_SETS, WHOLE_IMAGE, Region, RegionSet, get_region_set

__all__ = ["PPAD_REGIONS", "REGION_SETS", "WHOLE_IMAGE", "Region", "RegionSet", "get_region_set"]
