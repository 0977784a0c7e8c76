"""The shard tar reader against Python's tarfile, on every header format shard writers produce, and on damage."""

import io
import random
import tarfile

import pytest

from mug.data.loading.tar import BLOCK, TarError, split_name, tar_members, tar_samples

LONG = "a" * 90 + "/" + "b" * 90 + "/" + "c" * 120 + ".jpg"  # needs pax/GNU long names, or the ustar prefix


def make_tar(files: list[tuple[str, bytes]], fmt: int, extras: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        if extras:  # members that hold no file: skipped
            folder = tarfile.TarInfo("folder")
            folder.type = tarfile.DIRTYPE
            tar.addfile(folder)
            link = tarfile.TarInfo("folder/link.jpg")
            link.type, link.linkname = tarfile.SYMTYPE, "x.jpg"
            tar.addfile(link)
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def files_of(rng: random.Random, names: list[str]) -> list[tuple[str, bytes]]:
    sizes = [0, 1, 511, 512, 513, 5000]
    return [(name, rng.randbytes(sizes[i % len(sizes)])) for i, name in enumerate(names)]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_reads_what_tarfile_reads_in_every_format(fmt):
    names = ["000.jpg", "000.txt", "000.json", "d/001.jpg", "é-ü.txt", "x" * 96 + ".jpg"]
    names += [LONG] if fmt != tarfile.USTAR_FORMAT else ["p" * 120 + "/" + "q" * 60 + ".jpg"]  # prefix split
    files = files_of(random.Random(0), names)
    data = make_tar(files, fmt, extras=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        expected = [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]
    assert list(tar_members(io.BytesIO(data))) == expected == files


def test_v7_headers_without_magic_are_checked_by_checksum():
    files = files_of(random.Random(1), ["a.jpg", "a.txt"])
    data = bytearray(make_tar(files, tarfile.USTAR_FORMAT))
    for start in (0, BLOCK):  # strip the magic, fix the checksum: a v7 header
        data[start + 257 : start + 265] = bytes(8)
        header = bytes(data[start : start + 148]) + b" " * 8 + bytes(data[start + 156 : start + BLOCK])
        data[start + 148 : start + 156] = b"%06o\0 " % sum(header)
    assert list(tar_members(io.BytesIO(bytes(data)))) == files


def test_select_skips_members_and_is_asked_once_per_file():
    files = files_of(random.Random(2), ["0.jpg", "0.json", "1.jpg", "1.json"])
    asked = []
    selected = tar_members(io.BytesIO(make_tar(files, tarfile.PAX_FORMAT)), lambda n: asked.append(n) or ".jpg" in n)
    assert [name for name, _ in selected] == ["0.jpg", "1.jpg"] and asked == [name for name, _ in files]


def test_samples_group_consecutive_keys_like_webdataset():
    names = ["s/000.jpg", "s/000.TXT", "s/000.seg.png", "s/001.jpg", "s/001.jpg", "README", "__meta__", "s/002.txt"]
    files = files_of(random.Random(3), names)
    duplicates = []
    samples = list(tar_samples(io.BytesIO(make_tar(files, tarfile.PAX_FORMAT)), duplicate=duplicates.append))
    assert [(key, sorted(exts)) for key, exts in samples] == [
        ("s/000", ["jpg", "seg.png", "txt"]),
        ("s/001", ["jpg"]),
        ("s/002", ["txt"]),
    ]
    assert samples[1][1]["jpg"] == files[3][1] and duplicates == ["s/001.jpg"]  # the first copy is kept
    assert split_name("a.b/c.tar.gz") == ("a.b/c", "tar.gz") and split_name("dir/.hidden") is None


def test_damage_is_named_after_the_members_before_it():
    files = files_of(random.Random(4), ["0.jpg", "0.txt", "1.jpg", "1.txt"])
    data = make_tar(files, tarfile.PAX_FORMAT)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        third = tar.getmembers()[2]
    cases = {
        "cut short at member 3": data[: third.offset_data + 100],  # inside the third member's data
        "cut short at member 3 ": data[: third.offset + 200],  # inside its header
        "a garbled header at member 3": data[: third.offset] + b"\x17" * BLOCK + data[third.offset + BLOCK :],
    }
    for message, damaged in cases.items():
        read = []
        with pytest.raises(TarError, match=message.strip()) as err:
            for member in tar_members(io.BytesIO(damaged)):
                read.append(member)
        assert read == files[:2] and err.value.members == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "an empty file, not a tar"),
        (b"this is not a tar file\n" * 50, "not a tar file"),
        (b"short", "not a tar file"),
        (b"\x1f\x8b\x08" + bytes(600), "compressed tar: decompress it, or read it as 'pipe:gzip -dc PATH'"),
    ],
)
def test_a_stream_that_is_no_tar_says_so(data, message):
    with pytest.raises(TarError, match=message) as err:
        list(tar_members(io.BytesIO(data)))
    assert err.value.members == 0


def test_an_empty_archive_has_no_members_and_a_missing_end_block_is_damage():
    assert list(tar_members(io.BytesIO(make_tar([], tarfile.PAX_FORMAT)))) == []
    files = files_of(random.Random(5), ["0.jpg"])
    whole = make_tar(files, tarfile.PAX_FORMAT)
    with pytest.raises(TarError, match="cut short at member 2"):  # cut exactly after a member: still cut
        list(tar_members(io.BytesIO(whole[: BLOCK + len(files[0][1]) + (-len(files[0][1]) % BLOCK)])))


def test_on_damage_the_sample_in_hand_is_kept_only_when_whole():
    files = files_of(random.Random(6), ["0.jpg", "0.txt", "1.jpg", "1.txt"])
    data = make_tar(files, tarfile.PAX_FORMAT)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    for cut_in, kept in ((members[2], ["0"]), (members[1], [])):  # in the next sample's image; in 0's caption
        samples = []
        with pytest.raises(TarError, match="cut short"):
            for key, _ in tar_samples(io.BytesIO(data[: cut_in.offset_data + 1])):
                samples.append(key)
        assert samples == kept
