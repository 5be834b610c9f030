"""notify-worker's client for the web app: send its tasks by name, arguments checked first.

from notify_worker_client import NotifyClient
client = NotifyClient(celery_app, queue_prefix="preview-", state_redis=WORKERS_REDIS_URL)
client.process_csv(service_id, upload_id, template_id=..., template_type="sms",
                   placeholders=["name"], notification_count=120, request_id=request_id)
"""

from notify_worker_client import names
from notify_worker_client.client import NotifyClient
from notify_worker_client.validation import InvalidArgument

__all__ = ["InvalidArgument", "NotifyClient", "names"]
__version__ = "1.0.0"
