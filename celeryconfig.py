"""Celery configuration (see docs/reliability.md). Values come from the environment through
WorkerSettings.

Reliability choices, briefly:
* late acks + reject on worker lost: a task killed mid-way is redelivered, never lost;
* prefetch 1: a long task never holds other messages hostage;
* JSON only: pickle is never accepted, in either direction;
* time limits at half the Redis visibility timeout, so Redis never hands a running task to a
  second worker;
* no broker ETAs for scheduled work (see tasks/csv_batches): Redis redelivers those.
"""

from kombu import Exchange, Queue

from worker.runtime import beat as _beat
from worker.runtime import queues, redis_urls
from worker.runtime.settings import get_worker_settings

_settings = get_worker_settings()
# Three Redis URLs, each redis://, rediss:// (TLS, certificate verified) or sentinel://.
_broker = redis_urls.parse(_settings.redis_url, "REDIS_URL")
_results = redis_urls.parse(_settings.result_backend_url, "NOTIFY_RESULT_BACKEND_URL")
_state = redis_urls.parse(_settings.state_redis_url, "NOTIFY_STATE_REDIS_URL")

broker_url = redis_urls.celery_url(_broker)
result_backend = redis_urls.celery_url(_results)
broker_connection_retry_on_startup = True
broker_transport_options = {
    "visibility_timeout": _settings.visibility_timeout,
    "socket_timeout": 30,
    "socket_connect_timeout": 10,
    "socket_keepalive": True,
    "health_check_interval": 25,
    "retry_on_timeout": True,
    **redis_urls.transport_options(_broker, _settings),
}
result_backend_transport_options = {
    "socket_timeout": 30,
    "socket_connect_timeout": 10,
    "retry_policy": {"timeout": 10.0},
    **redis_urls.transport_options(_results, _settings),
}
# rediss://, or sentinel:// with NOTIFY_REDIS_SENTINEL_TLS (kombu and the result backend then
# make their sentinel-managed connections TLS ones; the sentinels' own are in transport options).
if redis_urls.uses_tls(_broker, _settings):
    broker_use_ssl = redis_urls.ssl_options(_settings)
if redis_urls.uses_tls(_results, _settings):
    redis_backend_use_ssl = redis_urls.ssl_options(_settings)
redis_socket_timeout = 30
redis_socket_connect_timeout = 10
redis_backend_health_check_interval = 25
redis_retry_on_timeout = True
result_expires = 7 * 24 * 3600
result_extended = True

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]
event_serializer = "json"

task_acks_late = True
task_reject_on_worker_lost = True
task_acks_on_failure = True
task_acks_on_timeout = True
worker_prefetch_multiplier = 1
worker_cancel_long_running_tasks_on_connection_loss = True
task_time_limit = _settings.task_time_limit
task_soft_time_limit = _settings.task_soft_time_limit
task_track_started = True

worker_send_task_events = True
task_send_sent_event = True
worker_hijack_root_logger = False

task_default_queue = queues.CSV_BATCHES
task_create_missing_queues = True
task_queues = [
    # Each queue on its own direct exchange and routing key: publishing to one never fans out.
    Queue(name, Exchange(name, type="direct"), routing_key=name)
    for name in queues.all_queues(_settings.row_sink_queue)
]
task_routes = {name: {"queue": queue} for name, queue in queues.TASK_QUEUES.items()}
task_routes[queues.NOTIFICATIONS_SAVE_BATCH] = {"queue": _settings.row_sink_queue}

beat_scheduler = "worker.runtime.beat_scheduler:NotifyRedBeatScheduler"
# The schedule and lock live in the state store. Options explicit, so RedBeat does not fall
# back to (and warn about) the broker's transport options or TLS settings.
_redbeat = redis_urls.redbeat_config(_state, _settings)
redbeat_redis_url = _redbeat["redbeat_redis_url"]
redbeat_redis_options = _redbeat["redbeat_redis_options"]
redbeat_redis_use_ssl = _redbeat["redbeat_redis_use_ssl"]
redbeat_key_prefix = _beat.KEY_PREFIX
redbeat_lock_key = _beat.LOCK_KEY
redbeat_lock_timeout = _beat.lock_timeout()
beat_max_loop_interval = _beat.BEAT_MAX_LOOP_INTERVAL
beat_schedule = _beat.beat_schedule()
