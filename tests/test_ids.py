"""Time-ordered ids (gethookd.ids), as the group commit gives them to events."""

from __future__ import annotations

import time
import uuid

from gethookd.ids import id_text, uuid7s, uuid7s_with_text


def test_uuid7s_are_version_7_and_start_with_the_time():
    before_ms = time.time_ns() // 1_000_000
    ids = uuid7s(1000)
    after_ms = time.time_ns() // 1_000_000
    assert len(set(ids)) == 1000
    for made in ids:
        assert made.version == 7 and made.variant == uuid.RFC_4122
        assert before_ms <= made.int >> 80 <= after_ms
    assert uuid7s(0) == []


def test_later_ids_sort_after_earlier_ones():
    first = uuid7s(50)
    time.sleep(0.002)
    second = uuid7s(50)
    assert max(first) < min(second)
    assert max(first).bytes[:6] < min(second).bytes[:6]


def test_the_random_part_varies():
    """74 bits of os.urandom per id: no two in a batch share them, and ids are not
    guessable from one another."""
    ids = uuid7s(200)
    tails = {made.int & ((1 << 62) - 1) for made in ids}
    assert len(tails) == 200
    assert len({made.bytes[6:] for made in ids}) == 200


def test_uuid7s_with_text_gives_each_id_and_its_text():
    before_ms = time.time_ns() // 1_000_000
    pairs = uuid7s_with_text(300)
    assert len({made for made, _ in pairs}) == 300
    for made, written in pairs:
        assert written == str(made)
        assert made.version == 7 and made.variant == uuid.RFC_4122
        assert made.int >> 80 >= before_ms
    assert uuid7s_with_text(0) == []


def test_id_text_is_str_of_the_id_whether_remembered_or_not():
    ids = [uuid.uuid4() for _ in range(50)]
    assert [id_text(i) for i in ids] == [str(i) for i in ids]
    assert [id_text(i) for i in ids] == [str(i) for i in ids]  # now from memory
    assert id_text(uuid.UUID(str(ids[0]))) == str(ids[0])  # an equal id, another object
