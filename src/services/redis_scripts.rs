//! What a roomcast cluster keeps in Redis, and the Lua scripts that change it atomically.
//!
//! Every change that must happen once across the cluster (numbering an event, taking a name,
//! moving a session, reaping a dead node) is one script, so no two nodes can interleave in it.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `roomcast:{R}:seq` | string | room R's last seq |
//! | `roomcast:{R}:history` | stream | R's events, entry id `SEQ-0`, field `e` = the payload (`SEQ NODE OP TYPE USER\n` + event), capped `MAXLEN ~` |
//! | `roomcast:{R}:members` | hash | member name -> node |
//! | `roomcast:{R}:events` | channel | the payloads of R each script call numbered, in order, joined by `\n` (one message per call and room; the reaper's are single payloads) |
//! | `roomcast:{R}:poses` | channel | a node's changed poses at its tick |
//! | `roomcast:{R}:game` | string | the state of R's game, as its last game event said |
//! | `roomcast:{R}:lease` | string, TTL | the node that owns R's game |
//! | `roomcast:rooms` | sorted set (score 0) | rooms with members, and the lobby, in name (byte) order |
//! | `roomcast:accounts` | hash | registered accounts: folded name -> `VERSION\tNAME\tPHC` (the version is raised by each change) |
//! | `roomcast:accounts` | channel | each account as it is registered, changed or offered: `VERSION\tNAME\tPHC` |
//! | `roomcast:user:{folded}` | string | `NODE\tNAME`: who holds a user name |
//! | `roomcast:user:{folded}:rooms` | set | the rooms that user is in |
//! | `roomcast:session:{token}` | string | the folded user name of a session (TTL = resume grace once detached) |
//! | `roomcast:nodes` | set | registered node ids |
//! | `roomcast:node:{id}` | string, TTL | the node's heartbeat |
//! | `roomcast:node:{id}:users` | set | folded names the node holds |
//! | `roomcast:node:{id}:sessions` | set | tokens of the node's sessions |
//! | `roomcast:node:{id}` | channel | to the node: `wake`, `drop TOKEN NODE` (a session resumed elsewhere), `game\nROOM\nUSER\nNODE\nOP\nCOMMAND` (a game command for the game it owns), `refuse\nOP\nCODE\nTEXT` (its forwarded command was refused) |
//!
//! A room key is `roomcast:{` + name + `}:` + suffix: a room name may hold any character but
//! control characters, yet two (name, suffix) pairs never make the same key, because no
//! suffix holds `}:`.

/// The key of a room's `suffix` (`seq`, `history`, `members`, `events`, `poses`).
pub fn room_key(room: &str, suffix: &str) -> String {
    format!("roomcast:{{{room}}}:{suffix}")
}

/// The room of a channel name and whether it is its events channel (else poses).
pub fn parse_room_channel(channel: &str) -> Option<(&str, bool)> {
    let inner = channel.strip_prefix("roomcast:{")?;
    if let Some(room) = inner.strip_suffix("}:events") {
        return Some((room, true));
    }
    inner.strip_suffix("}:poses").map(|room| (room, false))
}

/// A node's control channel (and heartbeat key).
pub fn node_key(node: &str) -> String {
    format!("roomcast:node:{node}")
}

/// Numbers a run of history events and publishes them, each exactly as if it were alone:
/// `INCR` (never at or below the event's floor: the node's last delivered seq in the room),
/// the event between its prefix and suffix, `XADD` to the capped stream, the membership
/// change of its mode. A `leave` or `member` event of a user who is not a member on this node
/// is skipped (-1): a session another node took over, or that was reaped, leaves no second
/// time. A game event's state (when not empty) becomes the game's. A room whose last member
/// left loses its game (not the lobby).
///
/// Then ONE `PUBLISH` per room holds that room's payloads in order, joined by `\n` (a
/// payload is one header line and one line of event JSON, which the server writes without
/// raw line breaks; the subscriber reads the message two lines at a time). The bridge sends
/// every run of consecutive events as one call: one script call and one message per room
/// instead of one per event is most of what an event costs Redis and the subscribers.
///
/// Each event runs in its own `pcall`, so one that fails (say a key of the wrong type) fails
/// alone and leaves what it did so far, as a script call of its own would have; the others
/// go on and it is not published. Returns one outcome per event, in order: its seq, -1
/// (skipped), or the error's text (a string).
///
/// The keys are made here from the room names (as [`REAP`] does): a run spans rooms.
///
/// KEYS: none. ARGV: node, maxlen, then 10 per event: mode, op, type, user, folded user,
/// prefix, suffix, floor, room, state.
pub const PUBLISH_BATCH: &str = r#"
local node, maxlen = ARGV[1], ARGV[2]
local outcomes, rooms, payloads = {}, {}, {}
local function one(i)
  local mode, user, room = ARGV[i], ARGV[i + 3], ARGV[i + 8]
  local rk = 'roomcast:{' .. room .. '}:'
  local members = rk .. 'members'
  if mode == 'leave' or mode == 'member' then
    if redis.call('HGET', members, user) ~= node then return -1 end
  end
  local seq = redis.call('INCR', rk .. 'seq')
  local floor = tonumber(ARGV[i + 7])
  if seq <= floor then
    seq = floor + 1
    redis.call('SET', rk .. 'seq', seq)
  end
  local payload = seq .. ' ' .. node .. ' ' .. ARGV[i + 1] .. ' ' .. ARGV[i + 2] .. ' ' .. user .. '\n' .. ARGV[i + 5] .. seq .. ARGV[i + 6]
  redis.call('XADD', rk .. 'history', 'MAXLEN', '~', maxlen, seq .. '-0', 'e', payload)
  local urooms = 'roomcast:user:' .. ARGV[i + 4] .. ':rooms'
  if mode == 'join' then
    redis.call('HSET', members, user, node)
    redis.call('ZADD', 'roomcast:rooms', 0, room)
    redis.call('SADD', urooms, room)
  elseif mode == 'leave' then
    redis.call('HDEL', members, user)
    redis.call('SREM', urooms, room)
    if room ~= 'lobby' and redis.call('HLEN', members) == 0 then
      redis.call('ZREM', 'roomcast:rooms', room)
      redis.call('DEL', rk .. 'game', rk .. 'lease')
    end
  end
  if ARGV[i + 9] ~= '' then redis.call('SET', rk .. 'game', ARGV[i + 9]) end
  local list = payloads[room]
  if not list then
    list = {}
    payloads[room] = list
    table.insert(rooms, room)
  end
  table.insert(list, payload)
  return seq
end
for i = 3, #ARGV - 9, 10 do
  local ok, outcome = pcall(one, i)
  if not ok then
    if type(outcome) == 'table' then outcome = outcome.err end
    outcome = tostring(outcome)
  end
  outcomes[#outcomes + 1] = outcome
end
for _, room in ipairs(rooms) do
  redis.call('PUBLISH', 'roomcast:{' .. room .. '}:events', table.concat(payloads[room], '\n'))
end
return outcomes
"#;

/// A room as it is now, read at one instant: its last seq, its last events (newest first),
/// its members and its game's state.
///
/// KEYS: seq, history, members, game. ARGV: count.
pub const SYNC: &str = r#"
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
local tail = {}
if tonumber(ARGV[1]) > 0 then
  tail = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[1])
end
return {seq, tail, redis.call('HGETALL', KEYS[3]), redis.call('GET', KEYS[4])}
"#;

/// A game command on a node that does not own the room's game: if nobody holds the lease, the
/// node takes it and gets the game's last state (`{1, state}`); if another node does, the
/// command (ARGV[3], when not empty) goes to it on its channel (`{0}`).
///
/// KEYS: lease, game. ARGV: node, ttl ms, forwarded message (or "").
pub const LEASE: &str = r#"
local owner = redis.call('GET', KEYS[1])
if not owner then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  owner = ARGV[1]
end
if owner == ARGV[1] then
  return {1, redis.call('GET', KEYS[2])}
end
if ARGV[3] ~= '' then
  redis.call('PUBLISH', 'roomcast:node:' .. owner, ARGV[3])
end
return {0}
"#;

/// The owner's lease lives on: 1, or 0 when another node holds it.
///
/// KEYS: lease. ARGV: node, ttl ms.
pub const RENEW_LEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// The owner lets the game go.
///
/// KEYS: lease. ARGV: node.
pub const RELEASE_LEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"#;

/// Where the cluster's accounts are kept (a hash), and the channel that announces changes.
pub const ACCOUNTS: &str = "roomcast:accounts";

/// An account's record, as the hash and the channel hold it.
pub fn account_value(version: u64, name: &str, phc: &str) -> String {
    format!("{version}\t{name}\t{phc}")
}

/// Reads an account's record: (version, name, PHC string).
pub fn parse_account(value: &[u8]) -> Option<(u64, &str, &str)> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.splitn(3, '\t');
    let version = parts.next()?.parse().ok()?;
    Some((version, parts.next()?, parts.next()?))
}

/// Takes a user name for a node, if nobody holds it (ignoring ASCII case): 1, else 0. A
/// guest (ARGV[4] = 1) cannot take a registered name, whether or not its node has heard of
/// the account yet.
///
/// KEYS: the name's key, the node's names, the accounts. ARGV: node, name, folded, guest.
pub const CLAIM_NAME: &str = r#"
if ARGV[4] == '1' and redis.call('HEXISTS', KEYS[3], ARGV[3]) == 1 then return 0 end
if redis.call('SET', KEYS[1], ARGV[1] .. '\t' .. ARGV[2], 'NX') then
  redis.call('SADD', KEYS[2], ARGV[3])
  return 1
end
return 0
"#;

/// Registers an account: 0 if the name is registered or a user of that name is logged in
/// (on any node), -1 if the cluster holds `max` accounts, else its version (1), with the
/// account announced.
///
/// KEYS: the accounts, the name's key. ARGV: folded, name, PHC, max.
pub const REGISTER: &str = r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then return -1 end
local v = '1\t' .. ARGV[2] .. '\t' .. ARGV[3]
redis.call('HSET', KEYS[1], ARGV[1], v)
redis.call('PUBLISH', KEYS[1], v)
return 1
"#;

/// A registered user's new password: its version raised, kept and announced; returns the
/// version.
///
/// KEYS: the accounts. ARGV: folded, name, PHC.
pub const SET_PASSWORD: &str = r#"
local old = redis.call('HGET', KEYS[1], ARGV[1])
local version = 1
if old then
  version = (tonumber(string.match(old, '^(%d+)\t')) or 0) + 1
end
local v = string.format('%d', version) .. '\t' .. ARGV[2] .. '\t' .. ARGV[3]
redis.call('HSET', KEYS[1], ARGV[1], v)
redis.call('PUBLISH', KEYS[1], v)
return version
"#;

/// An account a node holds that Redis lacks: kept and announced only if the name is still
/// free (`HSETNX`: the cluster's account wins). Returns 1 if kept.
///
/// KEYS: the accounts. ARGV: folded, record.
pub const OFFER_ACCOUNT: &str = r#"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('PUBLISH', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// Frees a user name the node holds (a session ended there).
///
/// KEYS: the name's key, the node's names, the name's rooms. ARGV: node, folded.
pub const RELEASE_NAME: &str = r#"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. '\t' then
  redis.call('DEL', KEYS[1], KEYS[3])
end
redis.call('SREM', KEYS[2], ARGV[2])
return 1
"#;

/// Keeps a session's token (replacing its old one): what a resume on another node looks up.
///
/// KEYS: the new token's key, the old one's (or the new one again), the node's sessions.
/// ARGV: folded name, new token, old token (or "").
pub const SAVE_SESSION: &str = r#"
if ARGV[3] ~= '' then
  redis.call('DEL', KEYS[2])
  redis.call('SREM', KEYS[3], ARGV[3])
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
return 1
"#;

/// A resume on node B of a session node A keeps: moves the name, the memberships and the
/// session to B, tells A to drop its copy, and returns the name and the rooms; nil when the
/// token is unknown or its holder is gone.
///
/// KEYS: the token's key. ARGV: token, node B.
pub const CLAIM_SESSION: &str = r#"
local folded = redis.call('GET', KEYS[1])
if not folded then return false end
redis.call('DEL', KEYS[1])
local ukey = 'roomcast:user:' .. folded
local v = redis.call('GET', ukey)
if not v then return false end
local tab = string.find(v, '\t', 1, true)
if not tab then return false end
local a, name, b = string.sub(v, 1, tab - 1), string.sub(v, tab + 1), ARGV[2]
redis.call('SREM', 'roomcast:node:' .. a .. ':sessions', ARGV[1])
redis.call('SREM', 'roomcast:node:' .. a .. ':users', folded)
redis.call('SET', ukey, b .. '\t' .. name)
redis.call('SADD', 'roomcast:node:' .. b .. ':users', folded)
local moved = {}
for _, room in ipairs(redis.call('SMEMBERS', ukey .. ':rooms')) do
  local mkey = 'roomcast:{' .. room .. '}:members'
  if redis.call('HGET', mkey, name) == a then
    redis.call('HSET', mkey, name, b)
    table.insert(moved, room)
  end
end
if a ~= b then
  redis.call('PUBLISH', 'roomcast:node:' .. a, 'drop ' .. ARGV[1] .. ' ' .. b)
end
return {name, moved}
"#;

/// The node is alive for `ttl` ms more, and registered: 1 if it already was, 0 if it was
/// not (it is new, or the others reaped it).
///
/// KEYS: the heartbeat key, the node set. ARGV: node, ttl ms.
pub const HEARTBEAT: &str = r#"
local known = redis.call('SISMEMBER', KEYS[2], ARGV[1])
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return known
"#;

/// Reaps every registered node whose heartbeat lapsed (or, with ARGV[4] = 1, the node
/// ARGV[1] itself, at its start: what a previous run with its id left): one leave event per
/// member it had, through the same numbering as [`PUBLISH_BATCH`] (the reaping node's id in the
/// header, op 0), its names and sessions freed, and it is unregistered. Atomic, so each leave
/// happens once however many survivors run it. Returns the number of leaves.
///
/// ARGV: node, time (JSON), maxlen, self.
pub const REAP: &str = r#"
local me, time, maxlen = ARGV[1], ARGV[2], ARGV[3]
local leaves = 0
local function reap(id)
  for _, folded in ipairs(redis.call('SMEMBERS', 'roomcast:node:' .. id .. ':users')) do
    local ukey = 'roomcast:user:' .. folded
    local v = redis.call('GET', ukey)
    if v and string.sub(v, 1, #id + 1) == id .. '\t' then
      local name = string.sub(v, #id + 2)
      for _, room in ipairs(redis.call('SMEMBERS', ukey .. ':rooms')) do
        local rk = 'roomcast:{' .. room .. '}:'
        if redis.call('HGET', rk .. 'members', name) == id then
          local seq = redis.call('INCR', rk .. 'seq')
          local payload = seq .. ' ' .. me .. ' 0 leave ' .. name .. '\n{"time":' .. time ..
            ',"user":"' .. name .. '","type":"leave","seq":' .. seq .. ',"data":""}'
          redis.call('XADD', rk .. 'history', 'MAXLEN', '~', maxlen, seq .. '-0', 'e', payload)
          redis.call('HDEL', rk .. 'members', name)
          if room ~= 'lobby' and redis.call('HLEN', rk .. 'members') == 0 then
            redis.call('ZREM', 'roomcast:rooms', room)
            redis.call('DEL', rk .. 'game', rk .. 'lease')
          end
          redis.call('PUBLISH', rk .. 'events', payload)
          leaves = leaves + 1
        end
      end
      redis.call('DEL', ukey, ukey .. ':rooms')
    end
  end
  for _, token in ipairs(redis.call('SMEMBERS', 'roomcast:node:' .. id .. ':sessions')) do
    redis.call('DEL', 'roomcast:session:' .. token)
  end
  redis.call('DEL', 'roomcast:node:' .. id .. ':users', 'roomcast:node:' .. id .. ':sessions')
  redis.call('SREM', 'roomcast:nodes', id)
end
if ARGV[4] == '1' then
  reap(me)
else
  for _, id in ipairs(redis.call('SMEMBERS', 'roomcast:nodes')) do
    if id ~= me and redis.call('EXISTS', 'roomcast:node:' .. id) == 0 then
      reap(id)
    end
  end
end
return leaves
"#;

/// One page of rooms after a name (exclusive), with their member counts: `{more, {name,
/// count, ...}}`.
///
/// ARGV: after (or ""), limit.
pub const ROOMS: &str = r#"
local min = '-'
if ARGV[1] ~= '' then min = '(' .. ARGV[1] end
local limit = tonumber(ARGV[2])
local names = redis.call('ZRANGEBYLEX', 'roomcast:rooms', min, '+', 'LIMIT', 0, limit + 1)
local out = {}
for i, name in ipairs(names) do
  if i > limit then break end
  table.insert(out, name)
  table.insert(out, redis.call('HLEN', 'roomcast:{' .. name .. '}:members'))
end
local more = 0
if #names > limit then more = 1 end
return {more, out}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_keys_and_channels_round_trip() {
        assert_eq!(room_key("lobby", "seq"), "roomcast:{lobby}:seq");
        let odd = "a}:events";
        assert_eq!(
            parse_room_channel(&room_key(odd, "poses")),
            Some((odd, false))
        );
        assert_eq!(
            parse_room_channel(&room_key("cafe ☕", "events")),
            Some(("cafe ☕", true))
        );
        assert_eq!(parse_room_channel("roomcast:node:n1"), None);
        assert_eq!(parse_room_channel(ACCOUNTS), None);
    }

    #[test]
    fn account_records_round_trip() {
        let value = account_value(3, "Alice", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA");
        assert_eq!(
            parse_account(value.as_bytes()),
            Some((3, "Alice", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"))
        );
        assert_eq!(parse_account(b"x\tAlice\tphc"), None);
        assert_eq!(parse_account(b"1\tAlice"), None);
    }
}
