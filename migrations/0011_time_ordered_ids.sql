-- Events, deliveries and attempts get time-ordered ids (UUID version 7, RFC 9562).
--
-- A random (version 4) id puts each new row's primary-key entry, and every other index
-- entry keyed by it (deliveries by event, attempts by delivery), on a random leaf page.
-- With a large history those pages are spread over the whole index: each insert, and each
-- claim and finish that updates rows created together, dirties pages of its own, each
-- written to the WAL in full after a checkpoint, and read back from disk once the indexes
-- outgrow memory. Ids that start with their creation time keep the rows of one moment on
-- the same few pages. A claim of 50 (bench/RESULTS.md, 2026-11-29 afternoon):
-- 6.3 -> 5.5 ms at 10 thousand queued, 8.7 -> 7.9 ms at a million.
--
-- uuidv7() is built in from PostgreSQL 18 only; this one works on every supported server.
-- The first 48 bits are the Unix time in milliseconds, then the version (7), 74 random
-- bits and the variant: still unguessable, and still a uuid to every client. Ids made
-- before this migration stay as they are.
CREATE FUNCTION gethookd_uuid7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(
                        (extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

ALTER TABLE events ALTER COLUMN id SET DEFAULT gethookd_uuid7();
ALTER TABLE deliveries ALTER COLUMN id SET DEFAULT gethookd_uuid7();
ALTER TABLE delivery_attempts ALTER COLUMN id SET DEFAULT gethookd_uuid7();
