//! The handlers, called as a connection calls them, with the clock given: replies byte for byte.

use bytes::Bytes;
use kv::commands::execute;
use kv::Db;

const T0: u64 = 1_700_000_000_000;

/// The reply to one request at time `now`.
fn at(db: &Db, now: u64, request: &str) -> String {
    let args: Vec<Bytes> = request.split(' ').map(|w| Bytes::copy_from_slice(w.as_bytes())).collect();
    let mut out = Vec::new();
    execute(db, &args, now, &mut out);
    String::from_utf8(out).unwrap()
}

fn run(db: &Db, request: &str) -> String {
    at(db, T0, request)
}

#[test]
fn set_get_del_exists() {
    let db = Db::new();
    assert_eq!(run(&db, "GET k"), "$-1\r\n");
    assert_eq!(run(&db, "SET k hello"), "+OK\r\n");
    assert_eq!(run(&db, "get k"), "$5\r\nhello\r\n");
    assert_eq!(run(&db, "EXISTS k k nope"), ":2\r\n");
    assert_eq!(run(&db, "DBSIZE"), ":1\r\n");
    assert_eq!(run(&db, "DEL k nope k"), ":1\r\n");
    assert_eq!(run(&db, "GET k"), "$-1\r\n");
    assert_eq!(run(&db, "DBSIZE"), ":0\r\n");
}

#[test]
fn mget_answers_every_key_in_order() {
    let db = Db::new();
    run(&db, "SET a 1");
    run(&db, "SET c 333 PX 10");
    assert_eq!(run(&db, "MGET a b c a"), "*4\r\n$1\r\n1\r\n$-1\r\n$3\r\n333\r\n$1\r\n1\r\n");
    assert_eq!(at(&db, T0 + 10, "MGET c"), "*1\r\n$-1\r\n");
    assert_eq!(run(&db, "MGET"), "-ERR wrong number of arguments for 'mget' command\r\n");
}

#[test]
fn object_freq_counts_reads_since_the_key_was_stored() {
    let db = Db::new();
    run(&db, "SET k v");
    assert_eq!(run(&db, "OBJECT FREQ k"), ":0\r\n");
    run(&db, "GET k");
    run(&db, "MGET k nope k");
    assert_eq!(run(&db, "OBJECT freq k"), ":3\r\n");
    run(&db, "SET k w");
    assert_eq!(run(&db, "OBJECT FREQ k"), ":0\r\n");
    assert_eq!(run(&db, "OBJECT FREQ nope"), "$-1\r\n");
}

#[test]
fn set_nx_and_xx() {
    let db = Db::new();
    assert_eq!(run(&db, "SET k a XX"), "$-1\r\n");
    assert_eq!(run(&db, "SET k a NX"), "+OK\r\n");
    assert_eq!(run(&db, "SET k b NX"), "$-1\r\n");
    assert_eq!(run(&db, "SET k c xx"), "+OK\r\n");
    assert_eq!(run(&db, "GET k"), "$1\r\nc\r\n");
    assert_eq!(run(&db, "SET k d NX XX"), "-ERR syntax error\r\n");
    assert_eq!(run(&db, "SET k d xx nx"), "-ERR syntax error\r\n");
    assert_eq!(run(&db, "GET k"), "$1\r\nc\r\n");
}

#[test]
fn set_refuses_deadlines_that_are_not_ahead() {
    let db = Db::new();
    for request in ["SET k v EX 0", "SET k v PX -5", "SET k v ex -1"] {
        assert_eq!(run(&db, request), "-ERR invalid expire time in 'set' command\r\n", "{request}");
    }
    assert_eq!(run(&db, "SET k v EX 1 PX 5"), "-ERR syntax error\r\n");
    assert_eq!(run(&db, "DBSIZE"), ":0\r\n");
}

#[test]
fn keys_expire_at_their_deadline() {
    let db = Db::new();
    assert_eq!(run(&db, "SET a 1 EX 10"), "+OK\r\n");
    assert_eq!(run(&db, "SET b 1 PX 1500"), "+OK\r\n");
    assert_eq!(run(&db, "SET c 1"), "+OK\r\n");
    assert_eq!(run(&db, "TTL a"), ":10\r\n");
    assert_eq!(run(&db, "TTL c"), ":-1\r\n");
    assert_eq!(run(&db, "TTL nope"), ":-2\r\n");
    assert_eq!(at(&db, T0 + 1499, "GET b"), "$1\r\n1\r\n");
    assert_eq!(at(&db, T0 + 1500, "GET b"), "$-1\r\n");
    assert_eq!(at(&db, T0 + 1500, "EXISTS a b c"), ":2\r\n");
    // A plain SET drops the deadline.
    assert_eq!(run(&db, "SET a 2"), "+OK\r\n");
    assert_eq!(at(&db, T0 + 20_000, "GET a"), "$1\r\n2\r\n");
}

#[test]
fn expire_sets_and_replaces_deadlines() {
    let db = Db::new();
    assert_eq!(run(&db, "EXPIRE k 5"), ":0\r\n");
    run(&db, "SET k v EX 100");
    assert_eq!(run(&db, "EXPIRE k 5"), ":1\r\n");
    assert_eq!(run(&db, "TTL k"), ":5\r\n");
    assert_eq!(db.counts(), (1, 1), "one deadline in the index, not two");
    assert_eq!(at(&db, T0 + 5000, "GET k"), "$-1\r\n");
    assert_eq!(db.counts(), (0, 0));
    assert_eq!(run(&db, "EXPIRE k x"), "-ERR value is not an integer or out of range\r\n");
}

#[test]
fn ttl_rounds_to_the_nearest_second() {
    let db = Db::new();
    run(&db, "SET k v EX 10");
    assert_eq!(at(&db, T0 + 1, "TTL k"), ":10\r\n");
    assert_eq!(at(&db, T0 + 499, "TTL k"), ":10\r\n");
    assert_eq!(at(&db, T0 + 501, "TTL k"), ":9\r\n");
    assert_eq!(at(&db, T0 + 9_600, "TTL k"), ":0\r\n");
    assert_eq!(at(&db, T0 + 10_000, "TTL k"), ":-2\r\n");
}

#[test]
fn expire_conditions() {
    let db = Db::new();
    run(&db, "SET k v");
    assert_eq!(run(&db, "EXPIRE k 100 XX"), ":0\r\n");
    assert_eq!(run(&db, "EXPIRE k 100 GT"), ":0\r\n", "no deadline is later than any");
    assert_eq!(run(&db, "EXPIRE k 100 LT"), ":1\r\n");
    assert_eq!(run(&db, "EXPIRE k 50 NX"), ":0\r\n");
    assert_eq!(run(&db, "EXPIRE k 50 GT"), ":0\r\n");
    assert_eq!(run(&db, "EXPIRE k 200 gt"), ":1\r\n");
    assert_eq!(run(&db, "TTL k"), ":200\r\n");
    assert_eq!(run(&db, "EXPIRE k 10 XX"), ":1\r\n");
    assert_eq!(run(&db, "TTL k"), ":10\r\n");
    assert_eq!(run(&db, "EXPIRE k 10 SOON"), "-ERR Unsupported option SOON\r\n");
    assert_eq!(db.counts(), (1, 1));
}

#[test]
fn incr_counts_and_keeps_the_deadline() {
    let db = Db::new();
    assert_eq!(run(&db, "INCR n"), ":1\r\n");
    assert_eq!(run(&db, "INCR n"), ":2\r\n");
    run(&db, "SET m -5 EX 10");
    assert_eq!(run(&db, "INCR m"), ":-4\r\n");
    assert_eq!(run(&db, "TTL m"), ":10\r\n");
    run(&db, "SET s abc");
    assert_eq!(run(&db, "INCR s"), "-ERR value is not an integer or out of range\r\n");
    run(&db, &format!("SET max {}", i64::MAX));
    assert_eq!(run(&db, "INCR max"), "-ERR increment or decrement would overflow\r\n");
    assert_eq!(run(&db, "GET max"), format!("$19\r\n{}\r\n", i64::MAX));
    run(&db, "SET p +1");
    assert_eq!(run(&db, "INCR p"), "-ERR value is not an integer or out of range\r\n");
}

#[test]
fn the_purge_drops_expired_keys_in_batches() {
    let db = Db::new();
    for i in 0..1000 {
        run(&db, &format!("SET k{i} v PX {}", 100 + i));
    }
    run(&db, "SET forever v");
    assert_eq!(db.counts(), (1001, 1000));
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    // Nothing is due before the first deadline.
    assert_eq!(runtime.block_on(db.purge_step(T0 + 99)), 0);
    // Steps repeat batches while a shard has more due, within their time limit; each drops some.
    let mut purged = 0;
    while purged < 1000 {
        let n = runtime.block_on(db.purge_step(T0 + 2000));
        assert!(n > 0, "a step with keys due dropped none");
        purged += n;
    }
    assert_eq!(purged, 1000);
    assert_eq!(db.counts(), (1, 0));
    assert_eq!(run(&db, "GET forever"), "$1\r\nv\r\n");
}

#[test]
fn replies_redis_clients_expect() {
    let db = Db::new();
    assert_eq!(run(&db, "PING"), "+PONG\r\n");
    assert_eq!(run(&db, "PING hi"), "$2\r\nhi\r\n");
    assert_eq!(run(&db, "ECHO hi"), "$2\r\nhi\r\n");
    assert_eq!(run(&db, "CONFIG GET save"), "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
    assert_eq!(run(&db, "CONFIG GET appendonly"), "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
    assert_eq!(run(&db, "COMMAND DOCS"), "*0\r\n");
    assert_eq!(run(&db, "SELECT 0"), "+OK\r\n");
    assert_eq!(run(&db, "SELECT 1"), "-ERR DB index is out of range\r\n");
    assert_eq!(run(&db, "GET"), "-ERR wrong number of arguments for 'get' command\r\n");
    assert_eq!(run(&db, "NOPE x"), "-ERR unknown command 'NOPE'\r\n");
    assert_eq!(run(&db, "SET k v EX"), "-ERR value is not an integer or out of range\r\n");
    assert_eq!(run(&db, "SET k v FOO"), "-ERR syntax error\r\n");
}

#[test]
fn info_names_the_release_and_the_keyspace() {
    let db = Db::new();
    run(&db, "SET a 1 EX 10");
    run(&db, "SET b 1");
    let info = run(&db, "INFO");
    assert!(info.contains(&format!("\r\nkv_release:{}\r\n", kv::release::release())), "{info}");
    assert!(info.contains("\r\ndb0:keys=2,expires=1\r\n"), "{info}");
}

#[test]
fn a_snapshot_keeps_every_key_value_and_deadline() {
    let dir = std::env::temp_dir().join(format!("kv-snapshot-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dump.kv");
    let db = Db::new();
    let now = kv::now_ms();
    for i in 0..500 {
        at(&db, now, &format!("SET k{i} value{i}"));
    }
    at(&db, now, "SET later v EX 1000");
    at(&db, now, "SET gone v PX 1");
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    // `gone` is dead by the time the snapshot is written, or by the time it is read.
    let saved = runtime.block_on(kv::snapshot::save(&db, &path)).unwrap();
    assert!(saved == 501 || saved == 502, "{saved}");
    let copy = Db::new();
    assert_eq!(kv::snapshot::load(&copy, &path).unwrap(), 501);
    let now = kv::now_ms();
    assert_eq!(at(&copy, now, "GET k321"), "$8\r\nvalue321\r\n");
    let ttl = at(&copy, now, "TTL later");
    assert!(ttl == ":1000\r\n" || ttl == ":999\r\n", "{ttl}");
    assert_eq!(copy.counts(), (501, 1));
    // A cut file is refused, naming the problem.
    let data = std::fs::read(&path).unwrap();
    std::fs::write(&path, &data[..data.len() - 20]).unwrap();
    let e = kv::snapshot::load(&Db::new(), &path).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
