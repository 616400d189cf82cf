//! Disk geometry rules: where partition tables live for a sector size, whether an image's table
//! suits the disk it is written to, and where a partition at the end of a disk goes. All sizes
//! and offsets are `u64` bytes or sectors with checked arithmetic: a disk too small for a layout
//! is an error that says so, never a wrapped number handed to `sfdisk`.

/// One MiB: partitions start on MiB boundaries, as every partitioning tool does today.
pub const MIB: u64 = 1 << 20;

/// The GPT header signature, at the start of LBA 1.
const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";
/// Sector sizes an image's partition table may be laid out for.
const SECTOR_SIZES: [u32; 2] = [512, 4096];

/// The sector size an image's GPT was laid out for: the header sits at LBA 1, so at byte 512 or
/// byte 4096 of the image. `None` when `head` holds no GPT header.
pub fn gpt_sector_size(head: &[u8]) -> Option<u32> {
    SECTOR_SIZES.into_iter().find(|&size| {
        let at = size as usize;
        head.get(at..at + GPT_SIGNATURE.len()) == Some(GPT_SIGNATURE.as_slice())
    })
}

/// The primary partitions of an MBR (not a protective one): (type, first LBA, sectors).
fn mbr_partitions(head: &[u8]) -> Vec<(u8, u64, u64)> {
    if head.get(510..512) != Some([0x55, 0xaa].as_slice()) {
        return Vec::new();
    }
    (0..4)
        .filter_map(|i| {
            let entry = head.get(446 + 16 * i..446 + 16 * (i + 1))?;
            let kind = entry[4];
            let le = |b: &[u8]| u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            let (start, len) = (le(&entry[8..12]), le(&entry[12..16]));
            (kind != 0 && len != 0).then_some((kind, start, len))
        })
        .collect()
}

/// Check that an image's partition table addresses the disk it is written to: a table laid out
/// for one sector size is read by the kernel in another's units and the partitions vanish (a
/// 512-byte GPT on a 4096-byte disk leaves only the protective MBR). `head` is the image's
/// first bytes (at least 4 KiB + 8 for the GPT check), `image_len` its length when known (for
/// MBR tables, whose sector size only shows in where the partitions would land).
///
/// Errors: a sentence naming both sector sizes, for the operator.
pub fn check_table_fits_disk(head: &[u8], image_len: Option<u64>, disk_sector: u32) -> Result<(), String> {
    if let Some(laid_out) = gpt_sector_size(head) {
        if laid_out != disk_sector {
            return Err(format!(
                "the image's GPT partition table is laid out for {laid_out}-byte sectors, but the disk has \
                 {disk_sector}-byte logical sectors: its partitions would not be found. Use an image built for \
                 {disk_sector}-byte sectors"
            ));
        }
        return Ok(());
    }
    // An MBR in 512-byte units read in 4096-byte units puts partitions 8 times further out:
    // past the end of the image they came from. Only a protective MBR (type 0xee) is exempt.
    let Some(len) = image_len else {
        return Ok(());
    };
    let parts = mbr_partitions(head);
    if disk_sector != 512 && !parts.is_empty() && parts.iter().all(|(kind, _, _)| *kind != 0xee) {
        let fits = |unit: u64| {
            parts
                .iter()
                .all(|(_, start, _)| start.checked_mul(unit).is_some_and(|s| s < len))
        };
        if fits(512) && !fits(u64::from(disk_sector)) {
            return Err(format!(
                "the image's MBR partition table is laid out for 512-byte sectors, but the disk has \
                 {disk_sector}-byte logical sectors: its partitions would start past the image's data. Use an \
                 image built for {disk_sector}-byte sectors"
            ));
        }
    }
    Ok(())
}

/// Where a partition at the end of a disk goes, in sectors: `(start, length)`.
///
/// `last_usable` is the last sector a partition may use (before a backup GPT), `used_end` the
/// first sector after the existing partitions. The partition is `want` bytes, aligned to a MiB
/// at its start, and shrunk down to no less than `need` bytes when the free tail is smaller.
///
/// Errors: the free space, and what was needed, when even `need` does not fit.
pub fn tail_partition(
    sector: u64,
    last_usable: u64,
    used_end: u64,
    want: u64,
    need: u64,
) -> Result<(u64, u64), String> {
    let too_small = |free: u64| {
        format!(
            "the disk has {} KiB free after its last partition; the partition needs {} KiB",
            free / 1024,
            need.div_ceil(1024)
        )
    };
    let align = (MIB / sector).max(1);
    let end = last_usable.checked_add(1).ok_or_else(|| too_small(0))?;
    let free_bytes = end.saturating_sub(used_end).saturating_mul(sector);
    let first_aligned = used_end
        .div_ceil(align)
        .checked_mul(align)
        .ok_or_else(|| too_small(free_bytes))?;
    let want_sectors = want.div_ceil(sector);
    // As large as wanted, else everything from the first aligned sector after the partitions.
    let start = match end.checked_sub(want_sectors) {
        Some(s) if s / align * align >= first_aligned => s / align * align,
        _ => first_aligned,
    };
    let length = end.checked_sub(start).ok_or_else(|| too_small(free_bytes))?;
    if length.saturating_mul(sector) < need {
        return Err(too_small(free_bytes));
    }
    Ok((start, length))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpt_head(sector: usize) -> Vec<u8> {
        let mut head = vec![0u8; 8192];
        head[510] = 0x55;
        head[511] = 0xaa;
        head[446 + 4] = 0xee;
        head[sector..sector + 8].copy_from_slice(GPT_SIGNATURE);
        head
    }

    fn mbr_head(start_lba: u32) -> Vec<u8> {
        let mut head = vec![0u8; 8192];
        head[510] = 0x55;
        head[511] = 0xaa;
        head[446 + 4] = 0x83;
        head[446 + 8..446 + 12].copy_from_slice(&start_lba.to_le_bytes());
        head[446 + 12..446 + 16].copy_from_slice(&1000u32.to_le_bytes());
        head
    }

    #[test]
    fn a_table_for_another_sector_size_is_refused_naming_both() {
        let image = Some(16 * MIB);
        let cases = [
            (gpt_head(512), 512, None),
            (gpt_head(4096), 4096, None),
            (
                gpt_head(512),
                4096,
                Some("laid out for 512-byte sectors, but the disk has 4096-byte"),
            ),
            (
                gpt_head(4096),
                512,
                Some("laid out for 4096-byte sectors, but the disk has 512-byte"),
            ),
            // An MBR at 1 MiB (LBA 2048) in a 16 MiB image: at 4096-byte sectors it would start
            // at 8 MiB, still inside; at LBA 4096 it would start past the image's end.
            (mbr_head(2048), 512, None),
            (mbr_head(2048), 4096, None),
            (
                mbr_head(4096),
                4096,
                Some("MBR partition table is laid out for 512-byte sectors"),
            ),
            (vec![0u8; 8192], 4096, None),
        ];
        for (head, disk, want) in cases {
            let got = check_table_fits_disk(&head, image, disk);
            match want {
                None => assert_eq!(got, Ok(()), "{disk}"),
                Some(text) => assert!(got.as_ref().is_err_and(|e| e.contains(text)), "{disk}: {got:?}"),
            }
        }
        assert_eq!(gpt_sector_size(&gpt_head(4096)), Some(4096));
        assert_eq!(gpt_sector_size(&[0u8; 100]), None, "short heads are no GPT");
    }

    #[test]
    fn tail_partitions_never_wrap_and_shrink_to_what_is_free() {
        const CD: u64 = 64 * MIB;
        // 1 GiB disk of 512-byte sectors, GPT (last usable 2097118), image ends at 16 MiB.
        assert_eq!(
            tail_partition(512, 2_097_118, 32_768, CD, MIB),
            Ok((1_964_032, 133_087))
        );
        // A 64 MiB disk: the 64 MiB partition does not fit after a 16 MiB image; what is free does.
        let (start, len) = tail_partition(512, 131_038, 32_768, CD, MIB).expect("shrinks");
        assert_eq!(start, 32_768, "starts at the first aligned sector after the image");
        assert_eq!(len, 131_039 - 32_768);
        // 4096-byte sectors.
        assert_eq!(tail_partition(4096, 16_378, 4096, CD, MIB), Ok((4096, 12_283)));
        // Full disk: a clear error, not sector 18446744073709549568.
        let err = tail_partition(512, 32_767, 32_768, CD, MIB).expect_err("no room");
        assert!(err.contains("0 KiB free") && err.contains("needs 1024 KiB"), "{err}");
        assert!(
            tail_partition(512, 40_000, 32_768, CD, 8 * MIB).is_err(),
            "less free than needed"
        );
        assert!(tail_partition(512, u64::MAX, 0, CD, MIB).is_err(), "no overflow");
    }
}
