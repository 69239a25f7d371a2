"""The Lua scripts of the upload store. Each touches only the keys of one upload
(which share the hash tag ``{<upload_id>}``), so they run on Redis Cluster too."""

# ARGV[6], when not empty, is the request's deadline on Redis's own clock (ms): a
# lock request that runs later than that (it waited behind a frozen Redis, and
# its sender has given up) must not take the lock. The reply carries Redis's
# time, from which callers learn the offset between their clock and Redis's.
# The record comes back packed, as its fields' lengths and their concatenation
# (store.unpack_fields): two bulk strings parse much faster than HGETALL's 40-odd.
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[6] ~= '' and ARGV[5] == '1' and now > tonumber(ARGV[6]) then return {'late', now} end
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return {'missing', now} end
local rec = {}
for i = 1, #fields, 2 do rec[fields[i]] = fields[i + 1] end
if rec['owner'] ~= ARGV[1] then return {'missing', now} end
if rec['status'] == 'expired' or
   (rec['status'] == 'uploading' and tonumber(rec['expires']) <= tonumber(ARGV[4])) then
  return {'expired', now}
end
if ARGV[5] == '1' then
  if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return {'locked', now} end
end
local lengths = {}
for i = 1, #fields do lengths[i] = #fields[i] end
return {'ok', now, table.concat(lengths, ','), table.concat(fields)}
"""

# Offset and checksum state advance together, only while we still hold the lock,
# and only from the offset this request started at. ARGV[8...] are more field/value
# pairs set in the same step: the states of the extra whole-file digests, deferred
# durability's fields. (Every chunk runs it: one HMGET and one HSET, as each call
# from Lua costs Redis a few µs.)
COMMIT = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'lost' end
redis.call('DEL', KEYS[2])
local rec = redis.call('HMGET', KEYS[1], 'offset', 'status', 'expires')
if rec[1] ~= ARGV[2] then return 'conflict' end
if rec[2] ~= 'uploading' or tonumber(rec[3]) <= tonumber(ARGV[7]) then return 'expired' end
redis.call('HSET', KEYS[1], 'offset', ARGV[3], 'hash_state', ARGV[4], 'expires', ARGV[5],
           unpack(ARGV, 8))
redis.call('PEXPIREAT', KEYS[1], ARGV[6])
return 'ok'
"""

# Deferred durability's recovery (durability.py): set fields under the lock, which is
# kept, only while the offset is still the one the checked bytes end at.
SETTLE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'lost' end
if redis.call('HGET', KEYS[1], 'offset') ~= ARGV[2] then return 'conflict' end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
return 'ok'
"""

# Deferred durability's background sync (durability.py): once the file is synced up to
# ARGV[2], move the synced point there, with ARGV[3] the checksum state at it. Only the
# sync the record still names (ARGV[1], its ticket) may: a recovery that took the upload
# back clears the ticket, so bytes resent since are never marked by a sync of older ones.
# No lock: the synced point only moves forward, and the lock's holder never reads it.
SYNCED = """
local rec = redis.call('HMGET', KEYS[1], 'sync_ticket', 'durable', 'offset')
if rec[1] ~= ARGV[1] then return 'stale' end
local synced = tonumber(ARGV[2])
if tonumber(rec[2] or '0') >= synced or tonumber(rec[3] or '0') < synced then return 'stale' end
redis.call('HSET', KEYS[1], 'durable', ARGV[2], 'durable_state', ARGV[3], 'sync_ticket', '')
if tonumber(rec[3]) == synced then redis.call('HSET', KEYS[1], 'boot', '') end
return 'ok'
"""

MARK_PROCESSING = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'lost' end
redis.call('DEL', KEYS[2])
if redis.call('HGET', KEYS[1], 'status') ~= 'uploading' then return 'conflict' end
redis.call('HSET', KEYS[1], 'status', 'processing', 'checksum', ARGV[2], 'expires', ARGV[3],
           'queued', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 'ok'
"""

# A new upload's file exists only while its record or its creation marker (the
# lock key, renewed while the first chunk streams) does: the record is only
# created while the marker the request set before creating the file still lives,
# and the marker goes in the same step. ARGV[2] is the marker's token ('' for none).
CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'exists' end
if ARGV[2] ~= '' then
  if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 'lost' end
  redis.call('DEL', KEYS[2])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 'ok'
"""

# What the sweeper needs to know before deleting an upload's file: 'locked'
# while any request holds the lock or creation marker, else the status
# ('missing' without a record). Lock first and in one step, so that a record
# created in between cannot be missed.
PRESENCE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 'locked' end
return redis.call('HGET', KEYS[1], 'status') or 'missing'
"""

# Queue an upload's post-processing again when its first hand-off is in doubt:
# still processing, no worker holds the finalization lease, and queued more
# than ARGV[2] ms ago (ARGV[1] is now). Stamping 'queued' makes a second
# requeue within the grace a no-op.
REQUEUE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status ~= 'processing' then return status end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'leased' end
local queued = tonumber(redis.call('HGET', KEYS[1], 'queued') or '0') or 0
if queued > tonumber(ARGV[1]) - tonumber(ARGV[2]) then return 'fresh' end
redis.call('HSET', KEYS[1], 'queued', ARGV[1])
return 'ok'
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# Moves the status from one value to another atomically; used by the
# post-processing task so that a redelivered task cannot finish twice.
TRANSITION = """
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] then
  return redis.call('HGET', KEYS[1], 'status') or 'missing'
end
redis.call('HSET', KEYS[1], 'status', ARGV[2], unpack(ARGV, 4))
if ARGV[3] ~= '' then redis.call('PEXPIREAT', KEYS[1], ARGV[3]) end
return 'ok'
"""

# The finishing run's signals went out: 'ok' when the record is still ARGV[1]
# (complete or failed) and finished by run ARGV[2], else 'other' ('missing'
# without a record: nothing is written then, so no record comes back to life).
SIGNALS_SENT = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status ~= ARGV[1] or redis.call('HGET', KEYS[1], 'signal_run') ~= ARGV[2] then
  return 'other'
end
redis.call('HSET', KEYS[1], 'signal_state', 'sent')
return 'ok'
"""

# The sweeper marks an expired upload only while nobody holds its lock.
MARK_EXPIRED = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 'locked' end
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status ~= 'uploading' then return status end
if tonumber(redis.call('HGET', KEYS[1], 'expires')) > tonumber(ARGV[1]) then return 'live' end
redis.call('HSET', KEYS[1], 'status', 'expired')
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 'ok'
"""

# A deferred length is set once, under the upload's lock (released in the same step).
SET_LENGTH = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'lost' end
redis.call('DEL', KEYS[2])
if redis.call('HGET', KEYS[1], 'status') ~= 'uploading' then return 'conflict' end
if redis.call('HGET', KEYS[1], 'size') ~= '-1' then return 'set' end
redis.call('HSET', KEYS[1], 'size', ARGV[2])
return 'ok'
"""

# Termination: the record goes under the lock, and the lock with it. The caller deletes
# the file afterwards: a file without a record is an orphan that the sweeper removes.
TERMINATE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'lost' end
redis.call('DEL', KEYS[2])
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'uploading' then return status or 'missing' end
redis.call('DEL', KEYS[1])
return 'ok'
"""
