-- Foreign keys and an index that cost work on every row of the hot path and guard nothing
-- another one does not already guard.
--
-- A foreign key is checked on each insert: a lookup of the parent row, which it also locks
-- (FOR KEY SHARE, a write to that row's header, WAL-logged). Every claim inserts an attempt
-- per delivery, checked against its delivery, its event and its destination; every group
-- commit inserts a delivery per route, checked against its event, its destination and its
-- account. The attempt's event and destination are its delivery's (the claim copies them
-- from it), and a delivery's account is its event's (the group commit writes both from one
-- request), so those checks repeat the one through the delivery or the event, and their
-- cascades repeat a cascade that already happens:
--   an account deleted -> its events -> their deliveries -> their attempts;
--   a destination deleted -> its deliveries -> their attempts;
--   an event deleted -> its deliveries -> their attempts.
-- PostgreSQL's CPU per event through store, claim and finish, one connection, 20,000 events
-- (bench/RESULTS.md, 2026-11-29 evening): 352-356 µs with these keys, 318-328 µs without.
--
-- deliveries_event (event_id) is the leading column of the unique (event_id,
-- destination_id) index, which serves every lookup by event as well; each row version of a
-- delivery (inserted, claimed, finished) wrote an entry to both.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_account_id_fkey;
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_event_id_fkey;
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_destination_id_fkey;
DROP INDEX deliveries_event;
