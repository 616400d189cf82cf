//! Management interfaces (boot devices): `ipmitool`, `redfish`, `noop-mgmt` (`fake` is in
//! [`super::fake`]).

pub mod ipmitool;
pub mod noop;
pub mod redfish;
