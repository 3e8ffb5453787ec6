@0x888760bd46ad33cd;
# wimpy wire schema. Every type here is usable from any Cap'n Proto
# implementation (C++, Python, Rust, ...): no language-specific annotations.
#
# Routing: a key belongs to the worker that the consistent-hashing ring maps
# its hash to. The key hash is XXH3-64 with seed 0 over the raw key bytes.
# The ring places each serving member at `vnodes` points, at
# XXH3-64("<memberId>#<i>") for i in 0..vnodes (the id in decimal ASCII); a
# key hash belongs to the member of the last point at or before it, wrapping
# around zero. A client that knows RingInfo can therefore route by itself.
#
# Failures a caller should act on are results, not exceptions: a `Failure`
# union says what went wrong in a form a program can switch on. Cap'n Proto
# exceptions are left for transport problems (disconnected, overloaded).
#
# Reader limits: servers read messages with a traversal limit of 64 MiB plus
# room for framing, so a value larger than `maxInlineValue` must travel as a
# stream (putStream / getStream) in chunks of at most `maxChunk` bytes.

const maxInlineValue :UInt64 = 1048576;   # 1 MiB: larger values stream
const maxChunk :UInt64 = 1048576;         # bytes per stream write

struct KeyHashRange {
  # A half-open range [start, end) of 64-bit key hashes. It wraps around zero
  # when end <= start; start == end means the whole space.
  start @0 :UInt64;
  end @1 :UInt64;
}

struct StoreStats {
  # Figures one worker's FAWN-DS store reports about itself.
  liveKeys @0 :UInt64;      # keys that a get would find
  logBytes @1 :UInt64;      # bytes of all log segments on disk
  garbageBytes @2 :UInt64;  # log bytes held by overwritten or deleted records
  indexBytes @3 :UInt64;    # bytes of the in-DRAM hash index
}

struct Member {
  # One worker as the master knows it.
  id @0 :UInt64;            # stable across restarts (kept in the worker's data directory)
  address @1 :Text;         # host:port of the worker's RPC listener
  state @2 :State;
  stats @3 :StoreStats;     # as of the worker's last heartbeat

  enum State {
    joining @0;   # receiving its ranges; not yet on the ring
    serving @1;   # on the ring
    leaving @2;   # handing its ranges over; still on the ring
    down @3;      # missed its heartbeats; its keys answer `unavailable`
  }
}

struct RingInfo {
  # Everything a client needs to route: the members on the ring at `epoch`.
  epoch @0 :UInt64;         # changes with every membership change
  vnodes @1 :UInt32;        # points per member
  members @2 :List(Member); # ring members (serving, leaving or down)
}

struct Failure {
  # Why a request was not carried out.
  union {
    staleEpoch @0 :UInt64;      # the worker is at this (newer) epoch, or does
                                # not own the key at the caller's: refresh the
                                # ring from the master and retry
    tooLarge :group {           # a key or value over the limit
      what @1 :Text;            # "key" or "value"
      limit @2 :UInt64;
      actual @3 :UInt64;
    }
    invalid @4 :Text;           # malformed request (an empty key, say)
    unavailable @5 :Text;       # the owner of the key is down or unreachable
    overloaded @6 :Void;        # back off and retry
    storage @7 :Text;           # the worker's store failed (I/O, corruption)
  }
}

struct GetResult {
  union {
    value @0 :Data;             # the value (at most maxInlineValue bytes)
    notFound @1 :Void;
    streamed @2 :UInt64;        # getStream: this many bytes went to the sink
    failure @3 :Failure;
  }
}

struct WriteResult {
  union {
    ok @0 :Void;                # durable per the worker's sync mode
    failure @1 :Failure;
  }
}

struct DeleteResult {
  union {
    deleted @0 :Bool;           # whether the key was there
    failure @1 :Failure;
  }
}

interface ByteSink {
  # Receives a large value in order. The sender calls write until all bytes
  # are sent, then done.
  write @0 (chunk :Data) -> stream;
  done @1 () -> ();
}

interface ValueUpload {
  # The receiving end of putStream.
  write @0 (chunk :Data) -> stream;
  commit @1 () -> (result :WriteResult);   # stores the value once all bytes arrived
}

interface RecordSink {
  # Receives store records while a key range moves between workers. Each
  # chunk is a run of records framed as in the log (length, CRC32C, flags,
  # key, value; docs/store-format.md), so each is checked on arrival.
  write @0 (frames :Data) -> stream;
  done @1 () -> (records :UInt64);
}

interface Worker {
  # One worker. `epoch` is the ring epoch the caller routed by; a worker that
  # does not own the key at its own epoch answers staleEpoch.
  get @0 (key :Data, epoch :UInt64) -> (result :GetResult);
  getStream @1 (key :Data, epoch :UInt64, sink :ByteSink) -> (result :GetResult);
  put @2 (key :Data, value :Data, epoch :UInt64) -> (result :WriteResult);
  putStream @3 (key :Data, size :UInt64, epoch :UInt64) -> (upload :ValueUpload, failure :Failure);
  # `failure` is set (and `upload` null) when the put is refused up front.
  delete @4 (key :Data, epoch :UInt64) -> (result :DeleteResult);
  stats @5 () -> (stats :StoreStats, epoch :UInt64);

  # Membership, called by the master and by other workers.
  setRing @6 (ring :RingInfo) -> ();
  # Streams every live record whose key hash is in `range` to `sink`.
  sendRange @7 (range :KeyHashRange, sink :RecordSink) -> (records :UInt64);
  # A sink that merges what it receives into this worker's store.
  receiveRange @8 () -> (sink :RecordSink);
  # Refuses writes to keys in `ranges` (answering staleEpoch) until the next
  # ring arrives: the last copy of moving ranges must not miss a write.
  fence @9 (ranges :List(KeyHashRange)) -> ();
}

interface Master {
  # The bootstrap interface of wimpy-master.
  ring @0 () -> (ring :RingInfo);
  status @1 () -> (ring :RingInfo, joining :List(Member));

  # Worker lifecycle. A worker registers with its listener address and the id
  # it kept from earlier runs (0 for none); the master answers with the id to
  # keep and how often to heartbeat.
  register @2 (id :UInt64, address :Text) -> (id :UInt64, heartbeatMillis :UInt32);
  heartbeat @3 (id :UInt64, stats :StoreStats) -> (epoch :UInt64);
  # The master's current ring epoch: fetch `ring` when it differs from the
  # worker's. 0 means the master does not know this id: register again.
  leave @4 (id :UInt64) -> ();

  # Proxy mode (FAWN-KV front end): the master routes, caches hot keys.
  get @5 (key :Data) -> (result :GetResult);
  put @6 (key :Data, value :Data) -> (result :WriteResult);
  delete @7 (key :Data) -> (result :DeleteResult);
}
