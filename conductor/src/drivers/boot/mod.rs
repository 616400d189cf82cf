//! Boot interfaces: what the machine boots next. `ipxe` and `pxe` serve network boot files,
//! `redfish-virtual-media` inserts an ISO ([`iso`]) through the BMC; [`assets`] are the boot
//! files they share (kernel, ramdisk, loaders). `fake` is in [`super::fake`].

pub mod assets;
pub mod ipxe;
pub mod iso;
pub mod pxe;
pub mod redfish_vmedia;
