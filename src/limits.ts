/**
 * Every numeric bound of the product, each with the reason for it (style.md).
 */

/** Header magic of the block file, block 0 (spec §4). */
export const BLOCK_FILE_MAGIC = 'DDUMBFSB';
/** Header magic of the index file, page 0 (spec §5.1). */
export const INDEX_FILE_MAGIC = 'DDUMBFSI';
/** Magic of a UFS file header (spec §7). */
export const UFS_FILE_MAGIC = 'DDUMBFSF';

/** UFS header size in bytes: 8 magic + 8 big-endian size (spec §7). ddfs.cfg may not say more (spec §3.2). */
export const UFS_HEADER_SIZE = 16;
/**
 * Bytes of a sparse node list a stat reads to count the stored blocks of a closed file exactly (st_blocks, what du
 * shows). Only the allocated extents of a node file with holes are read (a file without holes counts all its
 * nodes unread), once per version of the file (STAT_BLOCKS_CACHE_ENTRIES); 8 MiB is about 310,000 nodes of 27
 * bytes, a few ms from the page cache. Above it a stat counts every node of an allocated extent instead.
 */
export const STAT_NODE_SCAN_SIZE_MAX = 8 * 1024 * 1024;
/**
 * Closed files whose stored-block count (st_blocks) a daemon remembers, keyed by inode and valid while the UFS
 * file's ctime and size are unchanged: getattr runs several times per file (zero attr timeouts), the scan of a
 * sparse node list once. 4096 entries of about 100 bytes.
 */
export const STAT_BLOCKS_CACHE_ENTRIES = 4096;
/** Index page size; the cfg's index_block_size must be it, as every layout formula uses it (spec §3.2, §3.3). */
export const INDEX_PAGE_SIZE = 4096;
/** Largest hash the format allows (spec §3.2). */
export const HASH_SIZE_MAX = 64;
/** Largest address the format allows, in bytes (spec §3.2). */
export const ADDR_SIZE_MAX = 8;
/** mkddumbfs block-size range (spec §12). */
export const BLOCK_SIZE_MIN = 512;
export const BLOCK_SIZE_MAX = 2 * 1024 * 1024;
/** mkddumbfs overflow range (spec §12). */
export const NODE_OVERFLOW_MIN = 1.1;
export const NODE_OVERFLOW_MAX = 10.0;
/** 1.1 alignment of the bitmap and node array in the index file (spec §3.3). */
export const INDEX_ALIGNMENT = 65536;
/**
 * node_overflow a cfg may hold: wider than mkddumbfs's range (older versions may have allowed other factors), but a
 * factor below 1 cannot give every block a slot, and one above 100 is a damaged file, not a volume.
 */
export const NODE_OVERFLOW_CFG_MIN = 1;
export const NODE_OVERFLOW_CFG_MAX = 100;
/**
 * ddfs.cfg keeps the overflow factor with two decimals (`%.2f`) while mkddumbfs sized the node array with the factor
 * as typed: the factor behind a stored text is within half a hundredth of it (spec §3.3).
 */
export const NODE_OVERFLOW_TEXT_ROUNDING = 0.005;

/** Address of the header block and of the zero block; never allocated (spec §4). */
export const ADDR_ZERO = 0;
export const ADDR_LOST = 1;

/** Writes are refused below this many free blocks (spec §8.6 step 0, §8.10). */
export const FREE_BLOCK_RESERVE = 1000;
/** A checkpoint is due after this many net changes of the used-block count (spec §5.8). */
export const CHECKPOINT_CHANGE_COUNT = 16000;
/** The background tick checkpoints when at least this many blocks changed (spec §5.8). */
export const CHECKPOINT_TICK_CHANGE_COUNT = 1000;
/** Background thread period (spec §8.7). */
export const BACKGROUND_TICK_MS = 60_000;
/** Default auto-reclaim threshold in % of block_count (spec §8.1: code says 95). */
export const RECLAIM_PERCENT_DEFAULT = 95;
/**
 * Seconds the kernel keeps names and missing names of the mount (entry/negative_timeout of fuse_default). libfuse's
 * own default: long enough that a tree copy's repeated lookups of one name are answered by the kernel, short enough
 * that a change made behind the mount (none is expected) shows soon.
 */
export const FUSE_CACHE_TIMEOUT_S = 1;

/**
 * Reclaim (spec §9): queued rename/link destinations are walked in rounds; after this many rounds renames and links
 * are held back until the sweep, so a rename loop running during the reclaim cannot keep it from ending. Small: each
 * round only re-walks what moved during the previous one, and holding back is brief.
 */
export const RECLAIM_DRAIN_ROUND_COUNT_FREE = 4;
/**
 * Reclaim records at most this many removals (unlink, rmdir, rename source) during one walk (about 100 MB of paths
 * at worst); beyond that it aborts with nothing freed rather than grow without bound.
 */
export const RECLAIM_CHANGE_RECORD_COUNT_MAX = 1_000_000;
/**
 * Times reclaim reads a UFS file that came out shorter than it was (a truncate running meanwhile) before it gives up
 * and aborts: a file is rarely truncated twice during one read of it.
 */
export const RECLAIM_FILE_READ_ATTEMPT_COUNT_MAX = 3;
/**
 * Rounds in which reclaim reads the node lists of open files before its sweep (files opened during one round are read
 * in the next): an open file keeps only part of its node list in memory. Each round reads only files opened during
 * the previous one, so a few rounds end it; past this many, files are being opened faster than they are read and the
 * reclaim aborts with nothing freed rather than loop.
 */
export const RECLAIM_OPEN_FILE_ROUND_COUNT_MAX = 8;
/** Nodes reclaim reads from a UFS file at once: bounds its memory for huge files (64 Ki nodes ≈ 1.5 MiB). */
export const RECLAIM_READ_NODE_COUNT = 64 * 1024;
/**
 * A long online reclaim logs its progress (files read, block references, rate) at most this often, so
 * `tail -f ddumbfs.log` or the journal shows it working (issue 10); a reclaim shorter than this logs none.
 */
export const RECLAIM_PROGRESS_INTERVAL_MS = 10_000;

/** ddumbfs.log roll-over (spec §2). */
export const LOG_FILE_SIZE_MAX = 10 * 1024 * 1024;
export const LOG_FILE_BACKUP_COUNT = 10;
/** corrupted.txt backups kept (spec §2, §10.3 step 6). */
export const CORRUPTED_BACKUP_COUNT = 5;

/**
 * Index nodes are kept in memory in chunks of at most this many bytes, so a multi-TiB volume's index never needs a
 * single Buffer over Node's 4 GiB limit. A chunk always holds whole nodes.
 */
export const INDEX_CHUNK_SIZE_MAX = 256 * 1024 * 1024;

/**
 * Bytes of accepted writes a file may have waiting to be hashed and stored (the daemon's writer pool, spec §8.6
 * step 6): enough for a few 128 KiB requests to overlap with hashing, small enough to bound memory per open file.
 */
export const WRITE_BEHIND_SIZE_MAX = 4 * 1024 * 1024;

/**
 * Nodes a file may hold back before it syncs the block store and writes them (UfsFile: a node replacing one that
 * names a stored block waits for the block file to be synced). Bounds the memory and the work lost to a crash.
 */
export const HELD_NODE_COUNT_MAX = 4096;

/**
 * Deepest directory nesting a walk of the UFS tree descends to. PATH_MAX (4096) allows at most 2048 levels of
 * 1-byte names, so a deeper tree cannot be reached by path at all; the bound also caps the walker's stack.
 */
export const WALK_DEPTH_MAX = 2048;

/**
 * Entries one directory may hold for a walk of the UFS tree. A walk sorts each directory's names, so it holds them
 * all in memory at once (packed: the name bytes plus 9 bytes per entry, about 40 MiB for 1 Mi entries of 30 bytes);
 * 16 Mi entries is beyond what ext4 (about 10 M without large_dir) or XFS directories hold in practice while
 * keeping one directory's listing well under a gigabyte.
 */
export const WALK_DIRECTORY_ENTRY_COUNT_MAX = 16 * 1024 * 1024;

/**
 * Nodes one file's node list may hold, so the largest file is UFS_FILE_NODE_COUNT_MAX blocks: 16 TiB at 4 KiB
 * blocks, 512 TiB at 128 KiB (capped at 2^53 - 1 bytes, the exact range of a JS number and of fuse-native's offsets,
 * reached only by 2 MiB blocks). It is ext4's own bound for the same reason (32-bit logical block numbers: 16 TiB at
 * 4 KiB), keeps the UFS file (16 + 2^32 · node_size bytes, at most 288 GiB) within what ext4 — the usual host of
 * ddfsroot — can hold, and bounds the node list fsck and reclaim read per file. A truncate or write beyond it is
 * refused with FILE_TOO_BIG (EFBIG) and changes nothing; the kernel's own bound (2^63 - 1) is far above it.
 */
export const UFS_FILE_NODE_COUNT_MAX = 2 ** 32;

/**
 * Nodes per page of an open file's node cache (ufs/node_cache.ts): 256 nodes are 6–18 KiB (one pread) and cover
 * 1 MiB of file at 4 KiB blocks; small, so that every open small file costs one small page.
 */
export const UFS_NODE_PAGE_NODE_COUNT = 256;
/**
 * Pages of its node list an open file keeps in memory, least recently used dropped first: 256 pages (64 Ki nodes,
 * 1.6–4.5 MiB) cover 256 MiB of file at 4 KiB blocks, more than a sequential stream or a VM image's working set
 * revisits, and bound the daemon's memory per open file whatever the file's apparent size (issue 9).
 */
export const UFS_NODE_PAGE_COUNT_RESIDENT_MAX = 256;

/** Nodes read or written per I/O when scanning a UFS file (bounds memory for huge files: 64 Ki nodes ≈ 2 MB). */
export const UFS_NODE_CHUNK_COUNT = 64 * 1024;

/**
 * How many files fsck's walk runs ahead of the file it visits (fsck/context.ts walkUfsFiles), asking the kernel to
 * read them in meanwhile: enough requests in flight to keep a disk queue busy on a cold cache, a few KiB of paths.
 */
export const FSCK_WALK_LOOKAHEAD_FILES = 64;
/**
 * Bytes of each UFS file fsck asks the kernel to read ahead (header and first nodes; the whole file for all but
 * large ones). Bounded so a huge file's node list is not pulled in at once: its sequential reads get the kernel's
 * own read-ahead.
 */
export const FSCK_PREFETCH_BYTES = 256 * 1024;

/**
 * A UFS file opened with `preread` (fsck's read-only visits) at most this long is read whole with one pread at open:
 * header and node list together, one system call per small file instead of two (64 KiB: 2,426 nodes of 27 bytes,
 * 9.5 MiB of file at 4 KiB blocks; the reads up to this size are synchronous anyway, io/device.ts).
 */
export const UFS_PREREAD_BYTES_MAX = 64 * 1024;

/** Records between two CHECKPOINTs of a mirror pass (spec §4.6 "every few thousand records"): a kill resends at most this. */
export const MIRROR_CHECKPOINT_RECORD_COUNT = 2000;
/** Stream bytes between two CHECKPOINTs of a mirror pass (spec §4.6 "about every 64 MiB"). */
export const MIRROR_CHECKPOINT_SIZE_BYTES = 64 * 1024 * 1024;
/** Hashes in one HASHQ: 4096 × 64-byte hashes = 256 KiB, well under the 1 MiB record body bound. */
export const MIRROR_HASHQ_COUNT_MAX = 4096;
/**
 * Files a master collects before it sends one HASHQ batch for their distinct new hashes, reads their missing blocks in
 * runs and sends them (spec §4.6 step 4): one round trip per window instead of one per file. A window ends at this
 * many files or nodes (64 MiB of 4 KiB blocks; the node lists held are then 2 MiB), and before any other record.
 */
export const MIRROR_SEND_WINDOW_FILE_COUNT_MAX = 1024;
export const MIRROR_SEND_WINDOW_NODE_COUNT_MAX = 16384;
/** Hashes in one FILE_NODES: 8192 × 64 bytes = 512 KiB, under the 1 MiB record body bound. */
export const MIRROR_FILE_NODES_COUNT_MAX = 8192;
/** Entries in one DIRLIST piece: 2048 × (255-byte name + TLV framing) stays under the 1 MiB body bound. */
export const MIRROR_DIRLIST_ENTRY_COUNT_MAX = 2048;
/** Paths in one NEED (spec §4.8): 128 × (4096-byte path + 2-byte length) stays under the 1 MiB body bound. */
export const MIRROR_NEED_PATH_COUNT_MAX = 128;
/** DIGESTQs the master sends before reading their answers: bounds what sits unread in a pipe (≈ 256 × 70 bytes). */
export const MIRROR_DIGESTQ_BATCH_COUNT = 256;
/**
 * Largest dirty file (in nodes: 256 KiB of 4 KiB blocks) an incremental pass sends without asking its DIGESTQ first
 * (pass_master.ts queryChildren): a changed small file's records cost less than the round trip that would only
 * confirm it differs, and a file the replica already holds is applied as a no-op (spec §4.8). Larger files are
 * asked: their node list is worth a round trip.
 */
export const MIRROR_DIRTY_FILE_UNASKED_NODE_COUNT_MAX = 64;
/**
 * DIGESTQs a content pass's master asks ahead, for the children of the directories it will visit next, whose answers
 * it has not used yet (pass_master.ts askAhead): ≈ 2048 × 70 bytes unread in a pipe, 20 directories of 100 entries.
 */
export const MIRROR_DIGESTQ_AHEAD_COUNT_MAX = 2048;
/**
 * Entries of a volume's digest cache (mirror/digest_cache.ts, 80 bytes each: 20 MiB at most, read whole at a pass's
 * start); files past it are digested from their node lists each pass, as without a cache.
 */
export const MIRROR_DIGEST_CACHE_ENTRY_COUNT_MAX = 256 * 1024;
/**
 * A digest-cache entry is kept only for a file whose ctime and mtime are this much older than the pass's start:
 * file timestamps advance by a kernel tick (a few ms), so a rewrite in the tick of the read that filled an entry could
 * keep its key; 2 s covers coarse-timestamp filesystems too (the same rule as git's "racily clean" index entries).
 */
export const MIRROR_DIGEST_CACHE_RACY_MS = 2000;
/**
 * At most this many staged files a window fsyncs one by one; above it one syncfs(2) of the slave's filesystem makes
 * them durable at once (mirror/pass_slave.ts): a syncfs also writes every other dirty page of that filesystem, which
 * costs more than a few fsyncs when a window stages only a few files.
 */
export const MIRROR_STAGED_FSYNC_COUNT_MAX = 16;
/**
 * A slave keeps a staged UFS file's bytes (header and node list) in memory up to this size and writes the file whole,
 * off the JS thread, at its FILE_END (mirror/pass_slave.ts); a longer node list (a file over 170 MiB at 4 KiB
 * blocks) is written as it arrives instead, so memory stays bounded whatever a file's size. 1 MiB.
 */
export const MIRROR_STAGED_BUFFER_SIZE_BYTES = 1024 * 1024;
/**
 * Staged files a slave writes at once in the background: a window of 1024 small files then holds at most this many
 * buffers (64 × 1 MiB at worst) and open descriptors; the next FILE_END waits for the oldest.
 */
export const MIRROR_STAGED_WRITE_COUNT_MAX = 64;
/**
 * Subdirectories a slave stages its files into (`staging/<pass>/<k>/<seq>`, k = seq mod this): creates in one
 * directory are serialized by its lock, so each subdirectory gets one create at a time (io/mirror_fs.ts CreateLane)
 * and the subdirectories' creates run side by side, 4 = libuv's default thread pool.
 */
export const MIRROR_STAGING_SUBDIRECTORY_COUNT = 4;
/**
 * Received BLOCK bytes a slave collects before storing them with one BlockStore.storeBlocks call (one pwrite per run
 * of new addresses instead of one per block); stored before any other record is handled, so a FILE_NODES or HASHQ
 * always sees them. 4 MiB = 1024 blocks of 4 KiB, 32 of 128 KiB: each batch is one hand-off to a hash thread and one
 * to the thread pool's pwrite, and on a busy machine each hand-off costs a wake-up of about a millisecond.
 */
export const MIRROR_BLOCK_STORE_BATCH_SIZE_BYTES = 4 * 1024 * 1024;
/**
 * Bytes of consecutive blocks a master reads with one pread and hands to a hash thread to re-hash before sending them
 * (pass_master.ts sendBlocks); as MIRROR_BLOCK_STORE_BATCH_SIZE_BYTES, few hand-offs.
 */
export const MIRROR_BLOCK_READ_SIZE_BYTES = 4 * 1024 * 1024;
/**
 * Batches of received blocks a slave has put in its index whose writes (pwrite on the thread pool) it does not wait
 * for yet (mirror/pass_slave.ts): the receive loop goes on while they land; each holds a batch buffer of
 * MIRROR_BLOCK_STORE_BATCH_SIZE_BYTES until its write settles.
 */
export const MIRROR_BLOCK_STORE_WRITE_COUNT_MAX = 2;
/**
 * Bytes of new blocks a slave writes between two early write-backs of its block file (an fsync started in the
 * background, never awaited by the receive loop): the CHECKPOINT's own sync then finds little left to write, instead
 * of a whole window's 64 MiB while both sides of a local copy wait. Not a durability step: the order of §4.8 is kept
 * by the CHECKPOINT's sync.
 */
export const MIRROR_BLOCK_WRITEBACK_SIZE_BYTES = 16 * 1024 * 1024;
/**
 * Batches of received blocks a slave has handed to its hash threads and not stored yet: enough to keep every thread
 * busy while the JS thread decodes the next BLOCKs (2 per thread on a small machine), few enough that the memory
 * held stays 16 MiB (each batch is MIRROR_BLOCK_STORE_BATCH_SIZE_BYTES).
 */
export const MIRROR_BLOCK_HASH_BATCH_COUNT_MAX = 4;
/**
 * The in-memory pipe of a local copy (mirror/copy.ts, both sides in one process): bytes its writable side holds before
 * the writer waits, and records its readable side holds. 4 MiB (1000 BLOCKs of 4 KiB) lets the master read and send
 * on while the slave waits for a CHECKPOINT's syncs, as a socket buffer would; 256 records of any size are a bounded
 * extra.
 */
export const MIRROR_LOCAL_PIPE_SIZE_BYTES = 4 * 1024 * 1024;
export const MIRROR_LOCAL_PIPE_RECORD_COUNT = 16;
/** A pass deleting more than this share of the slave's entries is refused without --allow-mass-delete (spec §4.8). */
export const MIRROR_MASS_DELETE_PERCENT = 25;
/**
 * Largest payload of one frame on a daemon's control socket (mirror/control.ts): a DDMS chunk is cut to it, and a
 * peer announcing more is refused before anything is allocated. 1 MiB holds a few BLOCK records of the largest
 * block size while keeping a hostile length from costing memory.
 */
export const MIRROR_CONTROL_FRAME_SIZE_MAX = 1024 * 1024;
/** Largest request or result document on the control socket (JSON): a summary with a few thousand paths. */
export const MIRROR_CONTROL_DOCUMENT_SIZE_MAX = 256 * 1024;
/** Time a remote side gets to exit once its streams are closed before it is sent SIGTERM: an ssh teardown is quick. */
export const MIRROR_REMOTE_EXIT_WAIT_MS = 5000;
/** At most one verify progress line a second (the first at once): readable, and cheap next to the comparison. */
export const MIRROR_VERIFY_PROGRESS_INTERVAL_MS = 1000;
/**
 * Entries of its own tree a slave remembers by digest for RENAME hints (spec §4.5 RENAME): one path and one 32-byte
 * digest each, so at most ≈ 100 MB for the largest tree; past it a moved entry is resent instead (correct, slower).
 */
export const MIRROR_RENAME_HINT_COUNT_MAX = 1024 * 1024;
/** RENAME hints the master acts on per pass: each costs a round trip (RENAME, DIGESTQ, DIGESTA), bounded like a loop. */
export const MIRROR_RENAME_COUNT_MAX = 1024 * 1024;

/**
 * DDMS mirror stream (mirroring spec §4.5, §4.15): the largest body of any record but BLOCK, checked against the
 * header's body_len before a byte of the body is buffered. It bounds a receiver's memory per record whatever a peer
 * claims (spec §5 scenario 14: a body_len of 4 GiB), and still holds a FILE_NODES piece of ~43,000 TIGER hashes
 * (a 170 MiB file at 4 KiB blocks) or a DIRLIST part of thousands of entries; longer lists are split into pieces.
 */
export const STREAM_RECORD_BODY_SIZE_MAX = 1024 * 1024;

/**
 * Bytes a BLOCK body may hold beyond the HELLO's block_size: two TLV headers (12) and the format's largest hash
 * (HASH_SIZE_MAX, 64) are 76, over the spec's "e.g. block_size + 64"; 128 also leaves room for a small optional
 * field without letting a BLOCK carry a second block.
 */
export const STREAM_BLOCK_BODY_OVERHEAD_SIZE_MAX = 128;
/**
 * Bytes of block data one BLOCKS record carries (mirror/record_body.ts, type 30): blocks are batched up to this, at
 * least one block whatever the block size, so a 2 GiB initial copy at 4 KiB blocks is ~2,000 records instead of
 * ~500,000 BLOCKs (one header, one CRC, one decode and one await each). The body bound of a BLOCKS record follows
 * from it (stream_codec.ts bodySizeMaxOf): blocksPerRecordMax(block_size) x (block_size + HASH_SIZE_MAX) + overhead.
 */
export const STREAM_BLOCKS_DATA_SIZE_BYTES = 1024 * 1024;
/**
 * Bytes of one slab the DDMS encoder carves small record frames from (mirror/stream_codec.ts): 1 MiB holds 250 BLOCK
 * frames of 4 KiB blocks, so a pass allocates one ArrayBuffer per 250 records instead of one per record; frames over
 * 1/8 of it (BLOCKs of 128 KiB blocks and up) get a buffer of their own, so a slab wastes at most 1/8 at its end.
 */
export const STREAM_FRAME_SLAB_SIZE_BYTES = 1024 * 1024;

/**
 * Longest path (bytes) a DDMS record may name, relative to ddfsroot: Linux PATH_MAX (4096) less its NUL, so every
 * path a slave accepts can also be named to the kernel in one piece.
 */
export const STREAM_PATH_SIZE_MAX = 4095;

/** Longest name component (bytes) in a DDMS path or DIRLIST entry: Linux NAME_MAX, what the UFS itself allows. */
export const STREAM_NAME_SIZE_MAX = 255;

/** Longest symlink target (bytes) a SYMLINK record carries: the kernel refuses longer ones (PATH_MAX less NUL). */
export const STREAM_SYMLINK_TARGET_SIZE_MAX = 4095;

/** Longest extended-attribute name (bytes) in a record's meta: Linux XATTR_NAME_MAX. */
export const STREAM_XATTR_NAME_SIZE_MAX = 255;

/** Largest extended-attribute value (bytes) in a record's meta: Linux XATTR_SIZE_MAX. */
export const STREAM_XATTR_VALUE_SIZE_MAX = 65536;

/** Longest ASCII text field (an error message) in a DDMS record: one readable line, no more. */
export const STREAM_TEXT_SIZE_MAX = 1024;

/** Longest hash-algorithm name in a HELLO: the longest ddfs.cfg name (TIGER128/160/192) with room to spare. */
export const STREAM_HASH_NAME_SIZE_MAX = 16;

/**
 * Largest volume lock file (bytes) a tool reads: one record line (tool, pid, start time, boot id, time) is about
 * 150 bytes; anything much larger is not a lock record, and reading it whole would be pointless.
 */
export const LOCK_RECORD_SIZE_MAX = 512;

/**
 * How long a refused taker waits for the lock holder to answer "who are you" on the lock socket, before naming the
 * holder from the lock file alone: a holder answers from its event loop, which a long synchronous step may stall,
 * and the refusal must not hang on it.
 */
export const LOCK_QUERY_TIMEOUT_MS = 2000;
/** How often a shared-lock taker retries while another reader holds the gate for its moment (volume/lock.ts). */
export const LOCK_GATE_RETRY_COUNT = 200;
/** Delay between those retries, ms (the gate is held for a few ms: a bind, a file read, a bind). */
export const LOCK_GATE_RETRY_DELAY_MS = 10;

/**
 * Bytes kept free on each filesystem holding volume files (block file, index, UFS tree), on top of what the index
 * write-back and the next checkpoint will need: room for node lists, headers, the log and buffered partial blocks.
 * Below it new blocks are refused (ENOSPC to the writer) and writes are no longer answered ahead of storing, so a
 * full filesystem never fails a write the daemon already acknowledged (issue 6 §3).
 */
export const BACKING_FREE_RESERVE_BYTES = 4 * 1024 * 1024;
/**
 * New blocks allocated between two statfs of the filesystems under a volume while they are far from full: a statfs
 * per write would cost more than the write's own system calls; 256 blocks keep the estimate close.
 */
export const BACKING_RECHECK_BLOCK_COUNT = 256;

/**
 * Most names of new files a volume remembers as "directory not synced since this session made the entry" (volume.ts
 * `syncNewEntry`): each costs a path string, and a tool creating millions of files without ever fsyncing must not
 * grow the daemon without bound. Past it the record gives up being precise and every fsync syncs the file's
 * directory (always safe, only slower).
 */
export const NEW_ENTRY_COUNT_MAX = 65536;

/**
 * Size at which the master's journal starts a new segment (mirroring spec §4.2 `journal/NNNNNNNN.jnl`): retention
 * drops whole segments, so smaller ones free space sooner; 16 MiB is ~300,000 records of short paths, few files.
 */
export const JOURNAL_SEGMENT_SIZE_MAX = 16 * 1024 * 1024;
/**
 * Bytes between two checkpoints of a journal segment's offset index (journal_index.ts): a range read starts at the
 * last checkpoint at or below its claim, so it reads at most this much before its first record (one read of 64 KiB
 * costs about what its syscall does); a full 16 MiB segment holds 256 of them (a few KiB of memory).
 */
export const JOURNAL_INDEX_STRIDE_SIZE = 64 * 1024;
/**
 * Largest body of a journal record: TID, op, two length-prefixed paths of at most STREAM_PATH_SIZE_MAX bytes each.
 * A length field above it is corruption (recovery stops there, never reading past), not a record.
 */
export const JOURNAL_RECORD_BODY_SIZE_MAX = 8 + 1 + 2 + 4095 + 2 + 4095;
/**
 * Length of the data-write window (§4.3 "one record per file per group-commit window"): the first write to a file in
 * a window waits for its record, later ones in the same window do not. A pass taking the durable head also closes
 * the window, so no claim covers a record made before a write it did not see; the clock only keeps the map small.
 */
export const JOURNAL_WRITE_WINDOW_MS = 1000;
/**
 * Group-commit window of the master's journal (§4.3 "group commit, a few ms"): a record the daemon buffers (no op
 * waits for it, see mirror/journal.ts `record`) is written and fsynced at most this long after it was made, together
 * with every other record of the window. Longer windows mean fewer fsyncs (each one is a commit of the backing
 * file system's own journal, which slows the UFS writes around it); shorter ones keep `durable_head` fresher for
 * streaming. A waiting `append` (or a pass taking the head) does not wait for the window.
 */
export const JOURNAL_COMMIT_WINDOW_MS = 10;
/**
 * Most bytes of records buffered but not yet written (§4.3 group commit): past it each new change waits for its
 * record to be durable, so a slow journal disk slows the changes instead of growing the daemon's memory; 4 MiB is
 * ~70,000 records of short paths, far more than a window of any workload measured (bench journal: ~50).
 */
export const JOURNAL_PENDING_SIZE_MAX = 4 * 1024 * 1024;
/** Most files remembered as "has a record in this window": past it the window closes early (memory bound). */
export const JOURNAL_WRITE_WINDOW_FILE_COUNT_MAX = 65536;
/** Largest journal segment number (8 decimal digits in `NNNNNNNN.jnl`). */
export const JOURNAL_SEGMENT_NUMBER_MAX = 99_999_999;
/**
 * Bytes of consecutive blocks fsck reads with one pread and hands to a hash worker. Up to four such batches per worker
 * are in flight (store/hash_pool.ts HASH_BATCHES_IN_FLIGHT_PER_THREAD), so this bounds the hashing's buffers (8 MiB
 * with 2 workers): a 1 MiB pread already streams at disk
 * speed and 256 blocks of 4 KiB make a job long enough that the hand-off costs under 1 %.
 */
export const HASH_JOB_SIZE_MAX = 1024 * 1024;
/**
 * Nice value of a hash thread (store/hash_worker.ts; Linux nice values are per thread, so the JS thread keeps 0). A
 * mirror copy's profile showed the JS thread, the critical path, losing ~0.8 ms at each batch it handed a thread: on a
 * 2-core machine the woken thread preempted it. A hash thread at nice 5 still runs at full speed on an idle core.
 */
export const HASH_WORKER_NICE = 5;

/** Default seconds between stream passes (§4.10): short enough for a small lag, long enough to batch changes. */
export const MIRROR_STREAM_INTERVAL_S = 5;
/** First reconnect delay of a stream after a failed pass (as HAMMER), doubled on each failure. */
export const MIRROR_STREAM_BACKOFF_START_S = 15;
/** Cap of the stream's reconnect delay: a link back up is noticed within 10 minutes. */
export const MIRROR_STREAM_BACKOFF_MAX_S = 600;
/** How long a stream stopping after a checkpoint waits for a remote slave to exit on the end of its stream, s. */
export const MIRROR_STREAM_CUT_WAIT_S = 60;
/**
 * stream: the pause before the next pass when the last one did not move the claim although the journal on disk was
 * above it (a record written whose fsync, and so its durable_head, had not come yet): no back-to-back empty passes.
 */
export const MIRROR_STREAM_NO_PROGRESS_WAIT_S = 0.2;
/**
 * Journal retention cap by size (mirroring spec §4.12): the segments kept for replicas that lag are at most 1 GiB
 * (about 20 million records of short paths, weeks of a busy volume), so a dead replica cannot fill the master's disk;
 * a replica whose claim falls behind the kept range is marked for a content pass instead.
 */
export const MIRROR_RETENTION_SIZE_BYTES_MAX = 1024 * 1024 * 1024;
/**
 * Journal retention cap by age (§4.12): a segment last written more than 30 days ago is dropped even under the size
 * cap; a replica that has not passed for a month gets a content pass (by digest, cheap when little changed).
 */
export const MIRROR_RETENTION_AGE_MS_MAX = 30 * 24 * 3600 * 1000;
/** Longest replica label kept in `ddfsmirror/slaves/<uuid>` (the destination as given; a path or host:PATH). */
export const MIRROR_REPLICA_LABEL_SIZE_MAX = 4096;
/**
 * Most master sides of passes one daemon serves at once (one per replica, spec §4.12: a slow replica never blocks the
 * others): each holds its connection, a digest walk and hash threads; eight replicas of one volume is already a lot.
 */
export const MIRROR_MASTER_PASS_COUNT_MAX = 8;
/** Seconds without a record before a DDMS writer sends an IDLE heartbeat (§4.10: "every 30 s of inactivity"). */
export const MIRROR_HEARTBEAT_INTERVAL_S = 30;
/** Default seconds of silence from the peer before a stream declares the link dead: four missed heartbeats. */
export const MIRROR_STREAM_LINK_TIMEOUT_S = 120;
/**
 * Default longest wait of a stream between passes when the master's journal head did not move: changes that leave no
 * journal record (a ddumbfs 1.1 tool, a master without a journal) reach the replica within this.
 */
export const MIRROR_STREAM_MAX_INTERVAL_S = 300;
/** Token bucket of -b: at most this many seconds of the rate may be sent in one burst (smooths ssh's window). */
export const MIRROR_BANDWIDTH_BURST_S = 0.25;
