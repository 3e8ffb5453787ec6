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
# With `replicas` R, a key is kept on a chain: that member (the head), then
# the next R-1 distinct members met at the points after it, wrapping; the
# last is the tail. With R above one, members whose state is down, failed
# or returning are then left out of the chain (they keep their points, so
# no key moves), and the first member left is the head: writes go there,
# reads to any member of the chain. With R one a chain keeps its member
# whatever its state.
#
# Failures a caller should act on are results, not exceptions: a `Failure`
# union says what went wrong in a form a program can switch on. Cap'n Proto
# exceptions are left for transport problems (disconnected, overloaded).
#
# Reader limits: every node and client reads messages with a traversal limit
# of 8 MiB, so a value larger than `maxInlineValue` must travel as a stream
# (putStream / getStream) in chunks of at most `maxChunk` bytes, and a batch
# carries at most `maxBatchBytes` of keys and values each way.
#
# Doc comments follow what they document (Cap'n Proto attaches a comment to
# the declaration before it, or to the enclosing block when it follows an
# opening brace), so generated documentation in any language reads right.
#
# Schema version 2 (`schemaVersion`). What changed since version 1, and how
# a reader of version 1 fares with version 2 answers:
# - Failure.tooLarge gained `kind` (an enum of what hit the limit) and
#   Failure.storage became a group of its old text (`message`, same ordinal)
#   and a `kind`. Readers of version 1 read `what` and the storage text as
#   before; `what` keeps its version 1 wording ("key", "value (use
#   getStream)", "batch answer", "result").
# - Master.heartbeat answers a union (epoch | unknownMember). A version 1
#   worker reads unknownMember as epoch 0, which meant "register again".
# - Master.leave answers a LeaveResult instead of throwing. This one breaks:
#   a version 1 caller sees every refusal of a leave as success, so operator
#   tools must be of version 2.
# - Worker.ring hands on the ring the worker holds.
# - Worker.receiveRange takes the range and `replace` (a version 1 master
#   sends neither, and gets the version 1 sink).
# - Member.State gained `failed`, and Member a `reason` for `down` and
#   `failed`; Master.heartbeat takes the worker's `storeFailure`. A version
#   1 reader sees an enumerant it does not know while a member is failed
#   (Rust's capnp reports it as "not in schema"), and a version 1 worker
#   never reports its store failed.
# - New constants: maxImageSide, maxHashRounds, fenceLeaseMillis,
#   maxReportedDamage; StoreStats lists the damage its store's last recovery
#   stepped over.
# Leave aside, clients of either version work with nodes of version 2; a
# master and workers of different versions are not mixed (a version 2 worker does not
# read a version 1 master's epoch 0 as "register again").
#
# Schema version 3: every connection is TLS 1.3 with a certificate from the
# cluster's CA on both ends, so peers of earlier versions (plain TCP) only
# reach nodes run with --insecure. What changed:
# - Worker's membership calls (setRing, sendRange, receiveRange, fence)
#   moved to WorkerAdmin, which Worker.admin hands only to a caller whose
#   certificate is the master's. Their old ordinals on Worker remain, named
#   obsolete*, and answer `unimplemented`.
# - Member.certificate and certificateExpires: whose certificate a member
#   registered with, and until when it is valid.
# - Master.joinToken and Master.join: a new worker joins with a one-time
#   token and gets a certificate signed by the master.
# - Failure.forbidden: the caller lacks the role a call needs (Role).
#   Master.register and Master.heartbeat need the worker role and
#   Master.leave the admin role; register answers `refused`, heartbeat
#   HeartbeatAnswer.refused and leave LeaveResult.failure.
#
# Schema version 4: chain replication. What changed:
# - RingInfo.replicas: how many copies of each key the ring keeps, and so
#   each key's chain (see Routing above). A master of an earlier version
#   sends 0, read as one. A reader of version 3 routes every request to a
#   key's owner, its chain's head.
# - Worker.chain hands a worker-role caller the ChainLink through which a
#   chain's writes pass from each member to the next (ChainWrite,
#   ChainResult).
# - WorkerAdmin.sendRanges and receiveRanges move many ranges in one pass,
#   and RecordSink.write may end inside a record.
# - Member.State.returning; with `replicas` above one, a key's chain
#   leaves out members that are down, failed or returning (see Routing).
# - Worker.chain takes the caller's id and link generation, and
#   ChainLink.forward a sequence number: forwards are pipelined on one
#   ordered stream per link.
#
# Schema version 5: leases on chain roles. What changed:
# - Master.register answers `leaseMillis`. With `replicas` above one, a
#   worker serves reads, and writes as a chain's head, only until that long
#   after it sent a heartbeat that the master answered with the epoch of
#   the ring the worker holds; the master marks a silent worker down (and
#   hands its roles on) only after longer than that. A master of an
#   earlier version sends 0: no lease, the worker serves as before.

# Schema version 6: re-replication that fences only the writes since a
# copy, at a set rate, with its progress in Master.status. What changed:
# - WorkerAdmin.sendRanges takes `after` and `bytesPerSecond` and answers
#   `upTo`: a first pass (after 0) sends every live record and answers a
#   version up to which every write was in the log when it began; a second
#   pass given that version sends only what was written since, and the
#   key hashes of the rest in RecordSink.unchanged.
# - RecordSink.unchanged.
# - Master.status answers `moving`: the data a membership change is
#   copying now, how far it got, and at what rate.
# - The scrub: WorkerAdmin.digestRanges, receiveRanges' `newerOnly`,
#   Master.scrub (admin role), and Master.status' `scrub` (ScrubReport).
# - Compute jobs run on any member of the key's chain (it reads its clean
#   copy, as a get does); ComputeOutput says which worker ran the job and
#   how many jobs its engine held.

# Schema version 7: a returning member catches up on what it missed. What
# changed:
# - WorkerAdmin.digestRanges answers `upTo`, as sendRanges does: every
#   write numbered up to it was in the log the digests were taken of. A
#   member back on its old data is compared with each source range by
#   range (small ones, cut finer than the ring's spans), and only the
#   ranges whose digests differ are copied to it before the fenced pass.

const schemaVersion :UInt32 = 7;        # see the change list above

const maxInlineValue :UInt64 = 1048576;   # 1 MiB: larger values stream
const maxChunk :UInt64 = 1048576;         # bytes per stream write
const maxBatchOps :UInt32 = 1024;         # operations in one Worker.batch
const maxBatchBytes :UInt64 = 4194304;    # 4 MiB of keys and values per batch message
const maxImageSide :UInt32 = 65535;       # pixels per side of any image a job makes (resize, crop)
const maxHashRounds :UInt32 = 10000000;   # rounds of one hash operation
const fenceLeaseMillis :UInt32 = 60000;
# How long Worker.fence holds unless set again: long enough to copy one
# range between renewals, short enough that a master that died mid-move
# does not block writes for long.

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
  damage @4 :List(DamagedSpan);
  # What the store's last recovery stepped over (the first
  # maxReportedDamage spans; `damagedSpans` counts them all).
  damagedSpans @5 :UInt64;
}

struct DamagedSpan {
  # Bytes of a worker's log that were no record (a checksum failed, say),
  # stepped over when its store last opened: the record there is lost, the
  # records after it were kept.
  segment @0 :UInt64;       # the segment's sequence number
  offset @1 :UInt64;        # byte offset in the segment file
  bytes @2 :UInt64;         # bytes stepped over
  reason @3 :Text;          # what was wrong, in words
}

const maxReportedDamage :UInt32 = 16;   # damaged spans a StoreStats lists

struct Member {
  # One worker as the master knows it.
  id @0 :UInt64;            # stable across restarts (kept in the worker's data directory)
  address @1 :Text;         # host:port of the worker's RPC listener
  state @2 :State;
  stats @3 :StoreStats;     # as of the worker's last heartbeat
  reason @4 :Text;          # why it is `down` or `failed`; empty otherwise
  certificate @5 :Text;     # the name on the certificate it registered with
                            # (empty: not known, or the cluster runs insecure)
  certificateExpires @6 :UInt64;
  # When that certificate expires, in seconds since the Unix epoch (0: not
  # known; the master learns it at each registration).

  enum State {
    # Where the member stands in the cluster.
    joining @0;   # receiving its ranges; not yet on the ring
    serving @1;   # on the ring
    leaving @2;   # handing its ranges over; still on the ring
    down @3;      # missed its heartbeats; its keys answer `unavailable`
    failed @4;    # answers heartbeats, but its store failed (a write or
                  # fsync failed, the disk is full) and is reopening; its
                  # keys answer `unavailable` until it serves again
    returning @5; # back from down or failed while the ring keeps more
                  # than one copy: on the ring, but out of its chains
                  # until it has the writes it missed
  }
}

struct RingInfo {
  # Everything a client needs to route: the members on the ring at `epoch`.
  epoch @0 :UInt64;         # changes with every membership change
  vnodes @1 :UInt32;        # points per member
  members @2 :List(Member); # ring members (serving, leaving or down)
  replicas @3 :UInt32;
  # Copies of each key: the length of a key's chain while the ring has that
  # many members (0, from a master before schema version 4: one).
}

struct Failure {
  # Why a request was not carried out. A program tells every kind of failure
  # apart by the union member and, within tooLarge and storage, by their enum
  # fields; text fields are for people.
  union {
    staleEpoch @0 :UInt64;      # the worker is at this (newer) epoch, or does
                                # not own the key at the caller's: refresh the
                                # ring from the master and retry
    tooLarge :group {           # a key, value or answer over a limit
      what @1 :Text;            # in words ("key", "value (use getStream)", ...)
      limit @2 :UInt64;
      actual @3 :UInt64;
      kind @9 :LimitKind;       # what hit the limit, and so what to do
    }
    invalid @4 :Text;           # malformed request (an empty key, say)
    unavailable @5 :Text;       # the owner of the key is down or unreachable
    overloaded @6 :Void;        # back off and retry
    storage :group {            # the worker's store failed
      message @7 :Text;         # in words
      kind @10 :StorageKind;
    }
    compute @8 :ComputeFailure; # a compute job was refused or failed
    forbidden :group {          # the caller's certificate does not carry the
                                # role this call needs
      needs @11 :Role;
      message @12 :Text;        # in words: the call, the role, who asked
    }
  }
}

enum Role {
  # What a certificate from the cluster's CA lets its holder do. The role
  # is the certificate subject's OU, its holder's name the CN.
  master @0;    # changes the ring and moves ranges (WorkerAdmin)
  worker @1;    # registers with the master, heartbeats
  admin @2;     # an operator: reads, writes, and membership (Master.leave)
  client @3;    # reads, writes and runs jobs
}

enum LimitKind {
  # What a tooLarge failure was over.
  unspecified @0;       # a version 1 peer did not say: read `what`
  key @1;               # the key is longer than the store allows: shorten it
  value @2;             # the value is longer than the store allows
  valueNeedsStream @3;  # the value is over maxInlineValue for one message:
                        # read it with getStream (or write it with putStream)
  batchAnswerFull @4;   # the batch's answer already holds maxBatchBytes of
                        # values: get this key on its own
  result @5;            # a compute result over maxInlineValue and no sink to
                        # stream it to: run the job alone, with a sink
}

enum StorageKind {
  # What a storage failure was.
  io @0;                # an I/O call failed (a version 1 peer's every storage failure reads as this)
  full @1;              # the disk, or the store's 32 GiB log address space, is full
  poisoned @2;          # an earlier write or fsync failed, so the store refuses
                        # everything until it is reopened (a version 2 worker
                        # answers `unavailable` instead while it reopens)
  corrupt @3;           # what the store read back does not check out
}

struct ComputeFailure {
  # Why a compute job gave no result. `message` states the limit and the
  # actual value in words; `limit` and `actual` carry them for programs where
  # the kind has them (0 otherwise).
  kind @0 :Kind;
  message @1 :Text;
  limit @2 :UInt64;
  actual @3 :UInt64;

  enum Kind {
    # What went wrong, for programs to switch on.
    badJob @0;              # unknown operation, bad parameter, operations out of order
    badImage @1;            # the value is not a PNG or JPEG that decodes
    emptyImage @2;          # the image has no pixels
    tooManyPixels @3;       # width x height over the limit (read from the header, before decoding)
    valueTooLarge @4;       # the value is over the compute size limit
    deadlineExceeded @5;    # the job ran past its deadline (checked between passes)
    cropOutside @6;         # a crop rectangle outside the image
    backendUnavailable @7;  # the job asked for a backend this worker lacks
    backendBusy @8;         # the backend's queue is full: back off and retry
    encode @9;              # the encoder refused the image
    device @10;             # the GPU failed (lost context, out of memory)
  }
}

struct GetResult {
  # What a get (or getStream) came to.
  union {
    value @0 :Data;             # the value (at most maxInlineValue bytes)
    notFound @1 :Void;
    streamed @2 :UInt64;        # getStream: this many bytes went to the sink
    failure @3 :Failure;
  }
}

struct WriteResult {
  # What a put came to.
  union {
    ok @0 :Void;                # durable per the worker's sync mode
    failure @1 :Failure;
  }
}

struct DeleteResult {
  # What a delete came to.
  union {
    deleted @0 :Bool;           # whether the key was there
    failure @1 :Failure;
  }
}

struct KeyOp {
  # One operation of a Worker.batch.
  key @0 :Data;
  union {
    get @1 :Void;
    put @2 :Data;               # the value to store (at most maxInlineValue bytes)
    delete @3 :Void;
  }
}

struct KeyOpResult {
  # What one operation of a batch came to; the other operations stand on
  # their own whatever this one did.
  union {
    value @0 :Data;             # get: the value
    notFound @1 :Void;          # get: no such key
    stored @2 :Void;            # put: durable per the worker's sync mode
    deleted @3 :Bool;           # delete: whether the key was there
    failure @4 :Failure;        # refused or failed; tooLarge of kind
                                # batchAnswerFull when the answer already holds
                                # maxBatchBytes: fetch that key with get
  }
}

interface ByteSink {
  # Receives a large value in order. The sender calls write until all bytes
  # are sent, then done.
  write @0 (chunk :Data) -> stream;
  # The next chunk, in order.
  done @1 () -> ();
  # Every chunk was sent.
}

interface ValueUpload {
  # The receiving end of putStream.
  write @0 (chunk :Data) -> stream;
  # The next chunk of the value, in order.
  commit @1 () -> (result :WriteResult);   # stores the value once all bytes arrived
}

interface RecordSink {
  # Receives store records while a key range moves between workers. Each
  # chunk is a run of records framed as in the log (length, CRC32C, flags,
  # key, value; docs/store-format.md), so each is checked on arrival.
  write @0 (frames :Data) -> stream;
  # The next bytes of the run of framed records. A write may end inside a
  # record (one larger than a message carries goes in pieces); the next
  # write carries the rest. (Receivers before schema version 4 take whole
  # records only.)
  done @1 () -> (records :UInt64);
  # Every run was sent; answers how many records the receiver took.
  unchanged @2 (hashes :List(UInt64)) -> ();
  # Key hashes of records the sender holds that the receiver has from an
  # earlier pass, unchanged since: a sink made with `replace` keeps these
  # keys at done, as it keeps the ones it received. (Version 6.)
}

# Compute jobs. A job is an ordered list of operations over the value at a
# key: the value starts as bytes; `decode` makes an image; image operations
# take and give an image; an encoder makes bytes again; a hash takes bytes and
# gives a 32-byte digest. A job that ends on an image is encoded as PNG. All
# filters are defined over integers (docs/compute.md), so every backend gives
# the same pixels.

enum Backend {
  # Where a compute job runs.
  auto @0;    # the fastest the worker has (a software GPU stack never counts as fastest)
  cpu @1;     # scalar reference code
  simd @2;    # NEON on aarch64, SSE2/AVX2 on x86_64
  gles @3;    # OpenGL ES 3.0 fragment shaders through EGL
  wgpu @4;    # WGSL compute shaders through wgpu (Vulkan)
}

enum ResizeFilter {
  # How resize weighs source pixels.
  bilinear @0;  # 2 taps per axis when enlarging, more when shrinking
  lanczos3 @1;  # 6 taps per axis when enlarging, more when shrinking
}

enum HashAlgo {
  # The hash of a hash operation.
  blake3 @0;
  sha256 @1;
}

struct Op {
  # One operation. Colour operations and filters other than the blurs and
  # resize leave alpha as it is.
  union {
    decode @0 :Void;                # PNG or JPEG (detected) to RGBA8
    grayscale @1 :Void;             # BT.601 luma, (77R + 150G + 29B + 128) >> 8
    invert @2 :Void;                # 255 - v
    brightnessContrast :group {     # (v - 128) * contrast + 128 + brightness
      brightness @3 :Int32;         # -255..255
      contrast @4 :Float32;         # 0..16
    }
    threshold @5 :UInt8;            # 255 where luma >= level, else 0
    gaussianBlur @6 :Float32;       # sigma, 0.1..32; kernel radius ceil(3 sigma)
    boxBlur @7 :UInt32;             # radius, 1..100
    sharpen :group {                # unsharp mask: v + amount * (v - gaussian(sigma))
      sigma @8 :Float32;            # 0.1..32
      amount @9 :Float32;           # 0..10
    }
    sobel @10 :Void;                # gradient magnitude of luma
    convolve :group {               # user kernel over R, G, B
      size @11 :UInt8;              # 3 or 5
      weights @12 :List(Float32);   # size * size, row-major, |w| <= 64
    }
    resize :group {
      width @13 :UInt32;
      height @14 :UInt32;
      filter @15 :ResizeFilter;
    }
    crop :group {
      x @16 :UInt32;
      y @17 :UInt32;
      width @18 :UInt32;
      height @19 :UInt32;
    }
    flipHorizontal @20 :Void;
    flipVertical @21 :Void;
    rotate @22 :UInt16;             # clockwise degrees: 90, 180 or 270
    encodePng @23 :Void;
    encodeJpeg @24 :UInt8;          # quality 1..100 (alpha dropped)
    hash :group {
      algo @25 :HashAlgo;
      rounds @26 :UInt32;           # 1 hashes the bytes; each further round hashes the digest
    }
  }
}

struct Job {
  # A compute job: operations in order, and where and how long to run them.
  ops @0 :List(Op);
  backend @1 :Backend;
  deadlineMillis @2 :UInt32;        # 0: the worker's default
}

struct StageTimes {
  # Where a job's time went, in nanoseconds.
  decodeNanos @0 :UInt64;
  uploadNanos @1 :UInt64;           # host to GPU (0 on CPU backends)
  kernelNanos @2 :UInt64;
  downloadNanos @3 :UInt64;         # GPU to host (0 on CPU backends)
  encodeNanos @4 :UInt64;
}

struct ComputeOutput {
  # A compute job's result and how it was made.
  backend @0 :Backend;              # the backend that ran the job (never auto)
  device @1 :Text;                  # what it ran on: instruction set, or GPU and driver
  software @2 :Bool;                # a GPU API implemented in software (llvmpipe, lavapipe)
  times @3 :StageTimes;
  width @4 :UInt32;                 # of the last image in the job (0 if there was none)
  height @5 :UInt32;
  union {
    value @6 :Data;                 # the result (at most maxInlineValue bytes)
    streamed @7 :UInt64;            # the result was this many bytes, written to the sink
  }
  worker @8 :UInt64;                # the worker that ran it (version 6; 0 before)
  jobs @9 :UInt32;
  # Jobs queued or running on that worker's compute engine as this one
  # ended, this one included: with the jobs it has on their way, what a
  # client weighs to choose among the workers holding a key. (Version 6.)
}

struct ComputeResult {
  # What a compute job came to.
  union {
    ok @0 :ComputeOutput;
    notFound @1 :Void;              # no value at the key
    failure @2 :Failure;            # routing failures as for get; job failures as `compute`
  }
}

interface Worker {
  # One worker. `epoch` is the ring epoch the caller routed by; a worker that
  # does not own the key at its own epoch answers staleEpoch.
  get @0 (key :Data, epoch :UInt64) -> (result :GetResult);
  # The value at `key`. One over maxInlineValue is refused as tooLarge
  # (kind `valueNeedsStream`): read it with getStream.
  getStream @1 (key :Data, epoch :UInt64, sink :ByteSink) -> (result :GetResult);
  # The value at `key`, written to `sink` in chunks of at most maxChunk bytes;
  # the result says how many bytes went (`streamed`).
  put @2 (key :Data, value :Data, epoch :UInt64) -> (result :WriteResult);
  # Stores `value` (at most maxInlineValue bytes; larger ones go by
  # putStream) under `key`, durable per the worker's sync mode when `ok`.
  putStream @3 (key :Data, size :UInt64, epoch :UInt64) -> (upload :ValueUpload, failure :Failure);
  # Stores a value of `size` bytes sent through `upload`. `failure` is set
  # (and `upload` null) when the put is refused up front.
  delete @4 (key :Data, epoch :UInt64) -> (result :DeleteResult);
  # Removes `key`, answering whether it was there.
  stats @5 () -> (stats :StoreStats, epoch :UInt64);
  # The store's figures and the ring epoch this worker is at.

  obsoleteSetRing @6 (ring :RingInfo) -> ();
  # Version 2's setRing: answers `unimplemented` (see WorkerAdmin).
  obsoleteSendRange @7 (range :KeyHashRange, sink :RecordSink) -> (records :UInt64);
  # Version 2's sendRange: answers `unimplemented` (see WorkerAdmin).
  obsoleteReceiveRange @8 (range :KeyHashRange, replace :Bool) -> (sink :RecordSink);
  # Version 2's receiveRange: answers `unimplemented` (see WorkerAdmin).
  obsoleteFence @9 (ranges :List(KeyHashRange)) -> ();
  # Version 2's fence: answers `unimplemented` (see WorkerAdmin).

  compute @10 (key :Data, job :Job, epoch :UInt64, sink :ByteSink) -> (result :ComputeResult);
  # Runs `job` over the value at `key` (routed like get). A result larger
  # than maxInlineValue goes to `sink`; without a sink it is refused as
  # tooLarge (kind `result`).
  computeBatch @11 (keys :List(Data), job :Job, epoch :UInt64) -> (results :List(ComputeResult));
  # The same job over many keys this worker owns, run in parallel; results in
  # the order of `keys`. Results over maxInlineValue are refused as tooLarge
  # (kind `result`): fetch those one at a time with compute.
  backends @12 () -> (backends :List(BackendInfo));
  # The backends this worker probed at start-up.

  batch @13 (ops :List(KeyOp), epoch :UInt64) -> (results :List(KeyOpResult));
  # Many gets, puts and deletes in one message, for a caller with many
  # requests in flight to this worker. Not a transaction: each operation is
  # routed (by `epoch`), carried out and answered on its own, in list order,
  # and the batch's writes share one wait for durability. `results` follow
  # the order of `ops`. A batch of more than maxBatchOps operations, or with
  # more than maxBatchBytes of keys and values, is refused whole: every
  # operation answers `invalid`.

  ring @14 () -> (ring :RingInfo);
  # The ring this worker was last given by the master, as the master gave
  # it (store figures left out), so that clients can route while the
  # master is away. A worker never makes or changes a ring itself.

  admin @15 () -> (admin :WorkerAdmin, refused :Failure);
  # The membership calls on this worker, for the master only: `admin` is
  # set when the caller's certificate is the master's, else `refused` is
  # (forbidden, needs master).

  chain @16 (from :UInt64, generation :UInt64) -> (link :ChainLink, refused :Failure);
  # Where the member before this one in a chain forwards the chain's
  # writes: `link` is set when the caller's certificate is a worker's, else
  # `refused` is (forbidden, needs worker). `from` is the caller's worker
  # id and `generation` numbers its links to this worker, higher for each
  # new one (see ChainLink.forward).
}

interface ChainLink {
  # Chain replication between workers. A key's writes enter at its chain's
  # head, which numbers each with a version (higher for every later write
  # of the key) and stores it; then each member forwards it to the next,
  # and answers once the next has answered. The tail answers once the write
  # is durable there, so the head's client is acknowledged only when every
  # copy holds the write.

  forward @0 (epoch :UInt64, writes :List(ChainWrite), seq :UInt64) -> (result :ChainResult);
  # Stores `writes` in order, forwards them on, and answers `ok` once the
  # rest of the chain holds them. Refused (staleEpoch) when `epoch` is not
  # this worker's, or a key's chain does not have this worker after its
  # head under it.
  #
  # A link carries one ordered stream: the caller numbers its forwards
  # 0, 1, 2, ... (`seq`) and may send the next before the last is
  # answered; they are stored in that order. A caller whose link broke
  # makes a new one with a higher `generation` (Worker.chain) and sends
  # what was not answered again, in order; from then on the old link's
  # forwards are refused (unavailable), so a late one cannot overwrite a
  # newer write.
}

struct ChainWrite {
  # One write of a chain, or a piece of one.
  key @0 :Data;
  version @1 :UInt64;       # non-zero: the head's number for this write
  union {
    put :group {
      # The value, whole (`offset` 0, `bytes` of `total`) or, for a value
      # larger than one message carries, one piece: pieces of a value come
      # in order, and the last completes it.
      offset @2 :UInt64;
      total @3 :UInt64;
      bytes @4 :Data;
    }
    delete @5 :Void;
  }
}

struct ChainResult {
  # The answer to ChainLink.forward.
  union {
    ok @0 :Void;            # every member after the caller holds the writes
    failure @1 :Failure;    # why not; the caller fails its own writes
  }
}

interface WorkerAdmin {
  # Membership calls on one worker: how the master moves ranges between
  # workers and publishes rings. Reached through Worker.admin.
  setRing @0 (ring :RingInfo) -> ();
  # Adopt `ring` unless it is older than the one held, and drop the keys of
  # ranges it gives to others.
  sendRange @1 (range :KeyHashRange, sink :RecordSink) -> (records :UInt64);
  # Streams every live record whose key hash is in `range` to `sink` (the
  # receiveRange of the range's next owner).
  receiveRange @2 (range :KeyHashRange, replace :Bool) -> (sink :RecordSink);
  # A sink that merges what it receives into this worker's store. With
  # `replace`, its done also deletes every key of `range` it did not
  # receive: the sender's copy is then the whole truth of the range (the
  # last pass of a move, with the source fenced), so a key deleted there
  # since an earlier pass is deleted here too, not brought back.
  fence @3 (ranges :List(KeyHashRange)) -> ();
  # Refuses writes to keys in `ranges` (answering staleEpoch) until the
  # next ring arrives, or for fenceLeaseMillis unless set again: the last
  # copy of moving ranges must not miss a write.
  sendRanges @4 (ranges :List(KeyHashRange), sink :RecordSink, after :UInt64, bytesPerSecond :UInt64)
      -> (records :UInt64, upTo :UInt64);
  # sendRange for many ranges at once, in one pass over the log (a scan
  # reads the whole log whatever the range, and a change of a ring of
  # chains moves hundreds of small spans between each pair of workers).
  # With `after` 0, every live record goes; `upTo` is then a version such
  # that every write of the ranges numbered up to it was in this worker's
  # log when the scan began, and every later one is numbered above it (0
  # when its writes carry no versions: one copy per key). With `after`
  # above 0 (an earlier pass's `upTo`, this worker still the ranges' head),
  # only records versioned above it go whole, and the key hashes of the
  # others go to RecordSink.unchanged: a sink made with `replace` then
  # ends as this worker's copy, though only the writes since were sent.
  # `bytesPerSecond` caps the rate at which frames go (0: no cap), so a
  # copy leaves the disk and the link to the clients.
  receiveRanges @5 (ranges :List(KeyHashRange), replace :Bool, newerOnly :Bool) -> (sink :RecordSink);
  # receiveRange for many ranges at once: with `replace`, done deletes the
  # keys of every one of them it did not receive. With `newerOnly` (version
  # 6; not with `replace`), a record is merged only where it is newer than
  # the receiver's copy of its key (a higher version, or a key it does not
  # hold or cannot read), and deletes are passed over: how the scrub
  # repairs a member of a chain while the chain's writes go on.
  digestRanges @6 (ranges :List(KeyHashRange)) -> (digests :List(RangeDigest), upTo :UInt64);
  # For each of `ranges`, in one pass over the log: how many live records
  # this worker holds there, and the XOR of a 64-bit mix of each one's key
  # hash and version (a record it cannot read counts as absent). Members of
  # a chain whose digests of a range match hold the same keys at the same
  # versions. (Version 6.) `upTo` (version 7), as sendRanges answers it:
  # every write of the ranges numbered up to it was in the log before the
  # pass began, so the digests count it (or a newer write of its key).
}

struct RangeDigest {
  # What WorkerAdmin.digestRanges says of one range.
  records @0 :UInt64;
  digest @1 :UInt64;
}

struct BackendInfo {
  # One compute backend a worker has.
  backend @0 :Backend;
  device @1 :Text;                  # what runs it: instruction set, or GPU and driver
  software @2 :Bool;                # a GPU API implemented in software: correct, not fast
}

struct ScrubReport {
  # The scrub's last pass: each chain's members' digests of each of its
  # ranges compared (each with the tail's; the tail's with its
  # predecessor's), and every range that differed twice copied from that
  # reference to the member, newer records only (see digestRanges).
  startedUnix @0 :UInt64;   # when it began, seconds since the Unix epoch (0: never)
  tookMillis @1 :UInt64;
  running @2 :Bool;         # a pass is under way now (the figures are the last one's)
  ranges @3 :UInt64;        # (member, range) digests compared
  differing @4 :UInt64;     # of those, ones that differed twice
  repaired @5 :UInt64;      # records copied to members that lacked them
  logBytes @6 :UInt64;      # log bytes the pass read on the members
  bytesPerSecond @7 :UInt64;
  # The scrub's cap on its reading, as an average over each member's log
  # (0: none).
  failure @8 :Text;         # why the pass stopped short; empty when it finished
}

struct RangeMove {
  # The data a membership change is copying now (Master.status).
  worker @0 :UInt64;        # the member joining, returning, leaving or removed
  change @1 :Change;
  pass @2 :UInt8;           # 1: a copy while writes go on; 2: the writes
                            # since, with the ranges' heads fenced
  bytesCopied @3 :UInt64;   # frame bytes this pass has copied
  bytesExpected @4 :UInt64;
  # What the first pass should copy in all: each source's live bytes in
  # the share of the hash space it sends (an estimate; 0 in the second
  # pass, whose size is known only at its end).
  records @5 :UInt64;       # records this pass has copied
  elapsedMillis @6 :UInt64; # since this pass began
  bytesPerSecond @7 :UInt64;
  # The cap on each source's rate in the first pass (0: none). The second
  # pass, which holds writes back, goes as fast as it can.
  pairsDone @8 :UInt32;     # (source, receiver) pairs this pass has finished
  pairs @9 :UInt32;         # and all of them

  enum Change {
    # Which membership change copies the ranges.
    join @0;      # a new worker takes its ranges
    return @1;    # a worker back from down catches up on what it missed
    leave @2;     # a worker hands its ranges over (wimpy leave)
    remove @3;    # the chains of a dead worker take on new members (wimpy remove)
  }
}

interface Master {
  # The bootstrap interface of wimpy-master: the ring, worker lifecycle, and
  # the proxy (FAWN-KV front end) that routes for thin clients and caches
  # hot keys.
  ring @0 () -> (ring :RingInfo);
  # Everything a client needs to route by itself.
  status @1 () -> (ring :RingInfo, joining :List(Member), moving :List(RangeMove), scrub :ScrubReport);
  # The ring, the members still receiving their ranges, the copy a
  # membership change is making now (none, or one: changes go one at a
  # time), and the scrub's last pass.

  register @2 (id :UInt64, address :Text) -> (id :UInt64, heartbeatMillis :UInt32, refused :Failure, leaseMillis :UInt32);
  # Worker lifecycle (worker role): a worker registers with its listener
  # address and the id it kept from earlier runs (0 for none); the master
  # answers with the id to keep, how often to heartbeat and how long each
  # answered heartbeat's lease lasts (see version 5 above), or `refused`
  # (forbidden) for a caller without a worker certificate.
  heartbeat @3 (id :UInt64, stats :StoreStats, storeFailure :Text) -> HeartbeatAnswer;
  # Worker lifecycle (worker role): the worker is alive and its store holds `stats`.
  # `storeFailure` is empty while the store serves, and otherwise says why
  # it does not (the member is then `failed`).
  leave @4 (id :UInt64) -> (result :LeaveResult);
  # Worker lifecycle (an operator's call, admin role): worker `id` hands its ranges to
  # the members that take them over and leaves the ring. Answers once the
  # handover is done; the worker can then be stopped.

  get @5 (key :Data) -> (result :GetResult);
  # Proxy: Worker.get of the key's owner, or the master's hot-key cache.
  put @6 (key :Data, value :Data) -> (result :WriteResult);
  # Proxy: Worker.put to the key's owner.
  delete @7 (key :Data) -> (result :DeleteResult);
  # Proxy: Worker.delete at the key's owner.
  batch @8 (ops :List(KeyOp)) -> (results :List(KeyOpResult));
  # Proxy: many requests in one message, each served as get, put or delete
  # above would serve it (hot-key cache included) and answered on its own;
  # the master forwards them to each owner in list order. Results follow the
  # order of `ops`; limits and whole-batch refusals as in Worker.batch.

  joinToken @9 (ttlSeconds :UInt32) -> (token :Text, refused :Failure);
  # Joining (admin role): a one-time token with which a new worker joins
  # the cluster (`wimpy-worker --join TOKEN`), valid for `ttlSeconds`: the
  # CA's fingerprint and a secret, as text. `refused` when the caller is no
  # admin, or the master holds no CA key to sign with.
  join @10 (secret :Data, request :Data, name :Text) -> (certificate :Text, ca :Text, refused :Failure);
  # Joining: the one call open to a peer without a certificate. Spends the
  # token whose secret this is and signs `request` (a PKCS#10 certificate
  # signing request, DER) as a worker certificate for `name`; answers the
  # certificate and the CA's, PEM. `refused` (forbidden) for a secret that
  # is unknown, spent or expired.
  scrub @11 () -> (report :ScrubReport, refused :Failure);
  # The scrub (admin role): a pass now, answered once it is done (or
  # `refused`: the caller is no admin, or a membership change or another
  # pass is under way). The master also runs one every `--scrub-every`.
}

struct HeartbeatAnswer {
  # What the master makes of a heartbeat.
  union {
    epoch @0 :UInt64;           # the master's ring epoch: fetch `ring` when it
                                # differs from the worker's
    unknownMember @1 :Void;     # the master does not know this id (it
                                # restarted, say): register again
    refused @2 :Failure;        # the caller may not heartbeat (forbidden:
                                # it has no worker certificate)
  }
}

struct LeaveResult {
  # How a leave ended. Every refusal leaves the ring as it was.
  union {
    left @0 :Void;              # handed over and off the ring
    notMember @1 :Void;         # no member has this id
    lastOnRing @2 :Void;        # the only worker on the ring: nobody could
                                # take its keys
    failure @3 :Failure;        # the handover failed (`unavailable`: a worker
                                # it needed is down or unreachable)
  }
}
