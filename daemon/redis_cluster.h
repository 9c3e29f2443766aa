/*
 * Redis Cluster routing (schemas/redis.md "Redis Cluster"): the hash slot of
 * a key, the map of slots to masters read from CLUSTER SHARDS (CLUSTER SLOTS
 * on servers before 7.0), and the redirections (MOVED, ASK) a node answers
 * with, as pure functions over hiredis replies; and a pipeline that sends
 * commands to their slots' masters, overlapping the masters' round trips,
 * following MOVED and ASK, and going on without a master that is lost.
 */
#ifndef DAEMON_REDIS_CLUSTER_H
#define DAEMON_REDIS_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

struct redisReply;

#define RCLUSTER_SLOTS    16384
#define RCLUSTER_MAX_HOST 256
#define RCLUSTER_NO_NODE  UINT16_MAX /* a slot no master serves */

/*
 * The slot of key[0..len): CRC16 (XMODEM: polynomial 0x1021, initial 0) of
 * the key, or of its hash tag (the bytes between the first '{' and the
 * first '}' after it, when there are any), modulo 16384. The server's
 * CLUSTER KEYSLOT gives the same (tests/integration/54-redis-cluster.py).
 */
uint16_t rcluster_keyslot(const char *key, size_t len);

struct rcluster_node {
	char host[RCLUSTER_MAX_HOST];
	int port;
};

/* Which master serves each slot. */
struct rcluster_map {
	uint16_t owner[RCLUSTER_SLOTS]; /* index into nodes, RCLUSTER_NO_NODE if none */
	struct rcluster_node *nodes;    /* [n_nodes] masters, owned (rcluster_map_fini) */
	size_t n_nodes;
};

/*
 * Fills map from a CLUSTER SLOTS reply (each entry: first slot, last slot,
 * then the master [host, port, id, ...] and its replicas). A master named
 * by an empty host is reached on seed_host, the host the reply came from.
 * map starts zeroed or as a previous parse left it (that content is freed
 * first). Returns 0, or -1 with errstr naming what was wrong ("CLUSTER
 * SLOTS entry 3: slot range 9000-100000 out of 0-16383"); map is then
 * empty. Free with rcluster_map_fini.
 */
int rcluster_map_parse(const struct redisReply *r, const char *seed_host, struct rcluster_map *map,
    char *errstr, size_t errstr_size);
void rcluster_map_fini(struct rcluster_map *map);

/*
 * The same from a CLUSTER SHARDS reply (Redis 7.0 and later; what the
 * pipeline reads, CLUSTER SLOTS where the server has no SHARDS): each shard
 * [slots, [first, last, ...], nodes, [[id, .., port, P, ip, .., endpoint, E,
 * role, master|replica, .., health, ..], ...]]; a shard's slots go to its
 * node whose role is master, reached at its endpoint (else ip; empty: the
 * seed's host) and port (else tls-port). A shard without slots (a failed
 * master its replica replaced) is skipped. Errors name the shard.
 */
int rcluster_map_parse_shards(const struct redisReply *r, const char *seed_host,
    struct rcluster_map *map, char *errstr, size_t errstr_size);

/* Slots of map no master serves. */
size_t rcluster_map_unserved(const struct rcluster_map *map);

enum rcluster_redirect {
	RCLUSTER_NOT_REDIRECT = 0, /* any other reply */
	RCLUSTER_MOVED,            /* the slot lives elsewhere now: refresh the map, resend */
	RCLUSTER_ASK               /* migrating: send ASKING then the command to that node, once */
};

/*
 * Reads an error reply's text ("MOVED 3999 127.0.0.1:6381", "ASK 3999
 * 127.0.0.1:6381"; an empty host, as in "MOVED 3999 :6381", means the host
 * the reply came from, cur_host). On a redirect sets *slot and *to.
 */
enum rcluster_redirect rcluster_redirect_parse(
    const char *err, const char *cur_host, uint16_t *slot, struct rcluster_node *to);

/* ---- the cluster pipeline ------------------------------------------------- */

struct redisContext;

/*
 * Opens one connection (timeouts, AUTH: the caller's settings). Returns NULL
 * with the reason in errstr.
 */
typedef struct redisContext *rcluster_connect_fn(
    void *opaque, const char *host, int port, char *errstr, size_t errstr_size);

struct rcluster;

/*
 * Connects to the seed node, reads the slot map and connects to every
 * master. connect and opaque are kept for later connections (a master a
 * redirect names). NULL with the reason in errstr. Free with rcluster_free.
 */
struct rcluster *rcluster_new(const char *seed_host, int seed_port, rcluster_connect_fn *connect,
    void *opaque, char *errstr, size_t errstr_size);
void rcluster_free(struct rcluster *rc);

/*
 * Drops every connection; the next call re-reads the map (from any master
 * it still knows when the seed is down) and connects again.
 */
void rcluster_reset(struct rcluster *rc);

/*
 * Re-reads the map and checks that every slot has a master and every master
 * answers a connection (new ones are opened; those that fail are not kept,
 * the others stay). 0, or -1 with errstr.
 */
int rcluster_check_all(struct rcluster *rc, char *errstr, size_t errstr_size);

/* How often a master was lost (a connection failed) or refused (CLUSTERDOWN) so far. */
uint64_t rcluster_failures(const struct rcluster *rc);

/* Re-reads the map and connects to every master now. 0, or -1 with errstr. */
int rcluster_connect_all(struct rcluster *rc, char *errstr, size_t errstr_size);

/* WAIT after each master's commands (rcluster_run): replicas that must acknowledge. */
struct rcluster_wait {
	int replicas;
	int timeout_ms;
};

/*
 * One command of a pipeline: its arguments, or (formatted != NULL) its bytes
 * in the protocol as redisFormatCommandArgv makes them; borrowed; and the
 * slot of its keys.
 */
struct rcluster_cmd {
	int argc;
	const char **argv;
	const size_t *argvlen;
	const char *formatted;
	size_t formatted_len;
	uint16_t slot;
};

/*
 * Runs cmds[0..n): each appended to its slot's master, every master's
 * pipeline written before any reply is read (their round trips overlap),
 * then the replies read master by master into replies[i] (the caller frees
 * each with freeReplyObject). A MOVED reply refreshes the map (CLUSTER SHARDS
 * from a live master) and the command is sent again to the new master; ASK
 * sends ASKING and the command to the named node, once. A redirected
 * command was not executed, so each command runs once. Gives up after 5
 * rounds of redirects. With wait (NULL: none), every master that got
 * commands gets WAIT replicas timeout_ms after them, in the same pipeline.
 * A master that cannot be reached (connect, write or read fails), whose
 * replicas did not acknowledge (WAIT), or a slot no master serves leaves
 * its commands without a reply (NULL: they may or may not have run); the
 * other masters' commands go on; a failed connection is dropped and the
 * map read again next time.
 * Returns 0 when every command has a reply that is not a redirect (error
 * replies of the commands themselves included); else the number of
 * commands left without one (errstr: the first reason); -1 when out of
 * memory.
 */
int rcluster_run(struct rcluster *rc, const struct rcluster_cmd *cmds, size_t n,
    const struct rcluster_wait *wait, struct redisReply **replies, char *errstr,
    size_t errstr_size);

/* Redirects followed since rcluster_new: MOVED, ASK. */
void rcluster_redirects(const struct rcluster *rc, uint64_t *moved, uint64_t *ask);

/*
 * The lowest slot of each master that serves any, in map order, into
 * lowest[0..cap); returns how many masters serve slots (may exceed cap).
 */
size_t rcluster_master_slots(const struct rcluster *rc, uint16_t *lowest, size_t cap);

/*
 * A hash tag of slot: the smallest decimal integer whose slot it is, into
 * buf; returns its length (0 when buf is too small). Every instance finds
 * the same tag, so a key per master ("{<tag>}:...") has one name cluster-wide.
 */
size_t rcluster_slot_tag(uint16_t slot, char *buf, size_t size);

/*
 * The connection to the master of slot, taken out of rc (the caller frees
 * it with redisFree): for a tool that talks to one user's slot. NULL with
 * errstr when that master cannot be reached.
 */
struct redisContext *rcluster_take(
    struct rcluster *rc, uint16_t slot, char *errstr, size_t errstr_size);

#endif
