//! The handlers: one function per command, each writing its reply into `out`.
//!
//! `args[0]` is the command's name as sent (any case). A handler finds the shard of its key,
//! enters its cell (`dsu::Cell::with`: the scope no update applies inside) and locks it for the
//! few map operations the command needs.

use crate::db::{lock, Db, Entry};
use bytes::Bytes;
use kv_resp as resp;

/// Runs one request and writes its reply. `now` is the time the request is answered at, in
/// milliseconds since the Unix epoch.
#[dsu::updateable]
pub fn execute(db: &Db, args: &[Bytes], now: u64, out: &mut Vec<u8>) {
    let name = &args[0];
    let is = |command: &str| name.eq_ignore_ascii_case(command.as_bytes());
    if is("GET") {
        get(db, args, now, out)
    } else if is("SET") {
        set(db, args, now, out)
    } else if is("DEL") {
        del(db, args, now, out)
    } else if is("EXISTS") {
        exists(db, args, now, out)
    } else if is("EXPIRE") {
        expire(db, args, now, out)
    } else if is("TTL") {
        ttl(db, args, now, out)
    } else if is("INCR") {
        incr(db, args, now, out)
    } else if is("PING") {
        ping(args, out)
    } else if is("ECHO") {
        echo(args, out)
    } else if is("INFO") {
        info(db, out)
    } else if is("DBSIZE") {
        resp::integer(out, db.counts().0 as i64)
    } else if is("CONFIG") {
        config(args, out)
    } else if is("COMMAND") {
        // What redis-cli asks on connect (`COMMAND DOCS`): no command table to give.
        resp::array_len(out, 0)
    } else if is("SELECT") {
        select(args, out)
    } else {
        resp::error(out, &format!("ERR unknown command '{}'", name.escape_ascii()));
    }
}

/// `ERR wrong number of arguments for 'name' command`.
#[dsu::updateable]
fn wrong_arity(args: &[Bytes], out: &mut Vec<u8>) {
    let name = args[0].to_ascii_lowercase();
    resp::error(out, &format!("ERR wrong number of arguments for '{}' command", name.escape_ascii()));
}

/// An integer argument, as Redis reads one: optional `-`, then digits, no spaces or `+`.
#[dsu::updateable]
pub fn parse_int(bytes: &[u8]) -> Option<i64> {
    if bytes.first() == Some(&b'+') {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// `GET key`: the value, or null.
#[dsu::updateable]
fn get(db: &Db, args: &[Bytes], now: u64, out: &mut Vec<u8>) {
    let [_, key] = args else { return wrong_arity(args, out) };
    db.shard_of(key).with(|shard| match lock(shard).live(key, now) {
        Some(entry) => resp::bulk(out, &entry.value),
        None => resp::null(out),
    })
}

/// What `SET` does with a key that exists or does not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Condition {
    Always,
    /// `NX`: only if it does not exist.
    IfAbsent,
    /// `XX`: only if it exists.
    IfPresent,
}

/// `SET key value [EX seconds | PX milliseconds] [NX | XX]`: `+OK`, or null when the
/// condition does not hold.
#[dsu::updateable]
fn set(db: &Db, args: &[Bytes], now: u64, out: &mut Vec<u8>) {
    if args.len() < 3 {
        return wrong_arity(args, out);
    }
    let (key, value) = (&args[1], &args[2]);
    let mut deadline = None;
    let mut condition = Condition::Always;
    let mut options = args[3..].iter();
    while let Some(option) = options.next() {
        let unit = if option.eq_ignore_ascii_case(b"EX") {
            1000
        } else if option.eq_ignore_ascii_case(b"PX") {
            1
        } else if option.eq_ignore_ascii_case(b"NX") && condition != Condition::IfPresent {
            condition = Condition::IfAbsent;
            continue;
        } else if option.eq_ignore_ascii_case(b"XX") && condition != Condition::IfAbsent {
            condition = Condition::IfPresent;
            continue;
        } else {
            // An unknown option, NX with XX, or EX with PX.
            return resp::error(out, "ERR syntax error");
        };
        if deadline.is_some() {
            return resp::error(out, "ERR syntax error");
        }
        let Some(n) = options.next().and_then(|n| parse_int(n)) else {
            return resp::error(out, "ERR value is not an integer or out of range");
        };
        // A key that would be dead on arrival is a mistake of the client's, as Redis says.
        if n <= 0 {
            return resp::error(out, "ERR invalid expire time in 'set' command");
        }
        deadline = Some(now.saturating_add(n.saturating_mul(unit) as u64));
    }
    db.shard_of(key).with(|shard| {
        let mut shard = lock(shard);
        let exists = shard.live(key, now).is_some();
        if (condition == Condition::IfAbsent && exists) || (condition == Condition::IfPresent && !exists) {
            return resp::null(out);
        }
        shard.insert(key, Entry { value: value.to_vec(), expires_at: deadline });
        resp::simple(out, "OK");
    })
}

/// `DEL key [key ...]`: how many of them existed.
#[dsu::updateable]
fn del(db: &Db, args: &[Bytes], now: u64, out: &mut Vec<u8>) {
    if args.len() < 2 {
        return wrong_arity(args, out);
    }
    let removed = args[1..]
        .iter()
        .filter(|key| {
            db.shard_of(key).with(|shard| {
                let mut shard = lock(shard);
                shard.live(key, now).is_some() && shard.remove(key).is_some()
            })
        })
        .count();
    resp::integer(out, removed as i64);
}

/// `EXISTS key [key ...]`: how many of them exist (a key named twice counts twice).
#[dsu::updateable]
fn exists(db: &Db, args: &[Bytes], now: u64, out: &mut Vec<u8>) {
    if args.len() < 2 {
        return wrong_arity(args, out);
    }
    let found =
        args[1..].iter().filter(|key| db.shard_of(key).with(|shard| lock(shard).live(key, now).is_some())).count();
    resp::integer(out, found as i64);
}

/// `EXPIRE key seconds`: 1 if the key exists (its deadline is set), 0 otherwise.
#[dsu::updateable]
fn expire(db: &Db, args: &[Bytes], now: u64, out: &mut Vec<u8>) {
    let [_, key, seconds] = args else { return wrong_arity(args, out) };
    let Some(seconds) = parse_int(seconds) else {
        return resp::error(out, "ERR value is not an integer or out of range");
    };
    let at = (now as i64).saturating_add(seconds.saturating_mul(1000)).max(0) as u64;
    let set = db.shard_of(key).with(|shard| {
        let mut shard = lock(shard);
        shard.live(key, now).is_some() && shard.set_deadline(key, Some(at))
    });
    resp::integer(out, i64::from(set));
}

/// `TTL key`: seconds left, -1 if it has no deadline, -2 if it does not exist.
#[dsu::updateable]
fn ttl(db: &Db, args: &[Bytes], now: u64, out: &mut Vec<u8>) {
    let [_, key] = args else { return wrong_arity(args, out) };
    let left = db.shard_of(key).with(|shard| match lock(shard).live(key, now) {
        None => -2,
        Some(Entry { expires_at: None, .. }) => -1,
        Some(Entry { expires_at: Some(at), .. }) => ((*at - now) / 1000) as i64,
    });
    resp::integer(out, left);
}

/// `INCR key`: adds 1 to the integer the key holds (0 if it does not exist), keeping its
/// deadline; the new value.
#[dsu::updateable]
fn incr(db: &Db, args: &[Bytes], now: u64, out: &mut Vec<u8>) {
    let [_, key] = args else { return wrong_arity(args, out) };
    db.shard_of(key).with(|shard| {
        let mut shard = lock(shard);
        let (current, deadline) = match shard.live(key, now) {
            None => (0, None),
            Some(entry) => match parse_int(&entry.value) {
                Some(n) => (n, entry.expires_at),
                None => return resp::error(out, "ERR value is not an integer or out of range"),
            },
        };
        let Some(next) = current.checked_add(1) else {
            return resp::error(out, "ERR increment or decrement would overflow");
        };
        match shard.live(key, now) {
            Some(entry) => entry.value = next.to_string().into_bytes(),
            None => shard.insert(key, Entry { value: next.to_string().into_bytes(), expires_at: deadline }),
        }
        resp::integer(out, next);
    })
}

/// `PING [message]`: `+PONG`, or the message.
#[dsu::updateable]
fn ping(args: &[Bytes], out: &mut Vec<u8>) {
    match args {
        [_] => resp::simple(out, "PONG"),
        [_, message] => resp::bulk(out, message),
        _ => wrong_arity(args, out),
    }
}

/// `ECHO message`: the message (what `redis-cli --pipe` sends last, to know all was read).
#[dsu::updateable]
fn echo(args: &[Bytes], out: &mut Vec<u8>) {
    match args {
        [_, message] => resp::bulk(out, message),
        _ => wrong_arity(args, out),
    }
}

/// `SELECT index`: there is one database, 0.
#[dsu::updateable]
fn select(args: &[Bytes], out: &mut Vec<u8>) {
    match args {
        [_, index] if parse_int(index) == Some(0) => resp::simple(out, "OK"),
        [_, _] => resp::error(out, "ERR DB index is out of range"),
        _ => wrong_arity(args, out),
    }
}

/// `CONFIG GET parameter`: what redis-benchmark asks on connect, `save` and `appendonly`,
/// answered as a server that persists nothing while it runs; any other parameter is unknown
/// (an empty array).
#[dsu::updateable]
fn config(args: &[Bytes], out: &mut Vec<u8>) {
    let [_, verb, parameter] = args else { return wrong_arity(args, out) };
    if !verb.eq_ignore_ascii_case(b"GET") {
        return resp::error(out, "ERR CONFIG supports GET only");
    }
    let value: &[u8] = if parameter.eq_ignore_ascii_case(b"save") {
        b""
    } else if parameter.eq_ignore_ascii_case(b"appendonly") {
        b"no"
    } else {
        return resp::array_len(out, 0);
    };
    resp::array_len(out, 2);
    resp::bulk(out, &parameter.to_ascii_lowercase());
    resp::bulk(out, value);
}

/// `INFO [section]`: the server's release and the keyspace, in Redis's `key:value` lines.
#[dsu::updateable]
fn info(db: &Db, out: &mut Vec<u8>) {
    let (keys, expires) = db.counts();
    let text = format!(
        "# Server\r\nredis_version:7.0.0\r\nkv_release:{}\r\nprocess_id:{}\r\n\r\n# Keyspace\r\ndb0:keys={keys},expires={expires}\r\n",
        crate::release::release(),
        std::process::id(),
    );
    resp::bulk(out, text.as_bytes());
}
