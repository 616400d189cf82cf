//! Disks as the agent's policy sees them: which devices exist and which may be touched
//! ([`devices`], the allowlist), which one receives the OS ([`hints`]), and how a disk is erased
//! ([`erase`], with the drives' own firmware erase in [`secure_erase`]), and how disks are
//! joined into software RAID arrays ([`software_raid`]).
//!
//! It sits between the block-device layer below ([`crate::blockdev`]: sizes, sector sizes,
//! partition tables) and its two users above: the image writer ([`crate::image`]) and the
//! hardware managers' clean steps ([`crate::hardware`]). Nothing here knows about managers, steps
//! or the agent's state.

pub mod devices;
pub mod erase;
pub mod hints;
pub mod secure_erase;
pub mod software_raid;
