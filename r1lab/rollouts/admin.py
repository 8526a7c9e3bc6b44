from r1lab.admin_registration import register_plain
from r1lab.rollouts.models import RSDataset, RSRow, SpotCheck, SpotCheckItem

register_plain(RSDataset, SpotCheck, SpotCheckItem)
register_plain(RSRow, large=True)
