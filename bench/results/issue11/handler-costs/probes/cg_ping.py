import sys, redis
N = int(sys.argv[1]); what = sys.argv[2]
r = redis.Redis(socket_timeout=5, socket_connect_timeout=2, health_check_interval=30)
r.ping()
pool = r.connection_pool
held = pool.get_connection()
for i in range(N):
    if what == "client":
        r.ping()
    elif what == "pool":
        c = pool.get_connection(); c.send_command("PING"); c.read_response(); pool.release(c)
    elif what == "getrel":
        c = pool.get_connection(); pool.release(c)
    elif what == "held":
        held.send_command("PING"); held.read_response()
    elif what == "held_packed":
        held.send_packed_command(b"*1\r\n$4\r\nPING\r\n", check_health=False); held.read_response()
