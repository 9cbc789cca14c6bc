//! Fuzz target `etcd_values`: see `paymesh_fuzz::etcd_values` for the properties checked.

fn main() {
    loop {
        honggfuzz::fuzz!(|data: &[u8]| { paymesh_fuzz::etcd_values(data) });
    }
}
