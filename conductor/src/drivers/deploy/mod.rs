//! Deploy interfaces: `direct` (an agent in a ramdisk writes the image; it also runs the
//! in-band steps of cleaning and servicing). `fake` is in [`super::fake`].

pub mod direct;
