"""The Lua scripts of the upload store. Each touches only the keys of one upload
(which share the hash tag ``{<upload_id>}``), so they run on Redis Cluster too."""

ACQUIRE = """
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return {'missing'} end
local rec = {}
for i = 1, #fields, 2 do rec[fields[i]] = fields[i + 1] end
if rec['owner'] ~= ARGV[1] then return {'missing'} end
if rec['status'] == 'expired' or
   (rec['status'] == 'uploading' and tonumber(rec['expires']) <= tonumber(ARGV[4])) then
  return {'expired'}
end
if ARGV[5] == '1' then
  if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return {'locked'} end
end
return {'ok', fields}
"""

# Offset and checksum state advance together, only while we still hold the lock,
# and only from the offset this request started at.
COMMIT = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'lost' end
redis.call('DEL', KEYS[2])
if redis.call('HGET', KEYS[1], 'offset') ~= ARGV[2] then return 'conflict' end
if redis.call('HGET', KEYS[1], 'status') ~= 'uploading' or
   tonumber(redis.call('HGET', KEYS[1], 'expires')) <= tonumber(ARGV[7]) then
  return 'expired'
end
redis.call('HSET', KEYS[1], 'offset', ARGV[3], 'hash_state', ARGV[4], 'expires', ARGV[5])
redis.call('PEXPIREAT', KEYS[1], ARGV[6])
return 'ok'
"""

MARK_PROCESSING = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 'lost' end
redis.call('DEL', KEYS[2])
if redis.call('HGET', KEYS[1], 'status') ~= 'uploading' then return 'conflict' end
redis.call('HSET', KEYS[1], 'status', 'processing', 'checksum', ARGV[2], 'expires', ARGV[3])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 'ok'
"""

CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'exists' end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
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
