//! Which memcached server holds a key: ketama consistent hashing, as libmemcached computes it,
//! so that every node, every build and every client (the cache manager, the workers) agree,
//! and adding a server moves only its share of the keys.
//!
//! ```text
//!   each server, weight 1: 40 x MD5("host:port-i"), i in 0..40, 4 points per digest
//!                          (the little-endian u32 of bytes 4k..4k+4)  -> 160 points
//!   a key:   the little-endian u32 of MD5(key)'s first 4 bytes
//!            -> the first point >= it on the sorted ring, wrapping to the first point
//! ```
//!
//! A point two servers share goes to the smaller name, so the order of the configured list
//! never matters. std's hashers are not used: they differ between builds.

use md5::{Digest, Md5};

/// Digests per server (each gives 4 points).
const DIGESTS: usize = 40;

/// The ring of a list of servers.
#[derive(Debug, Clone)]
pub struct Ring {
    /// (point, index into the server list), sorted by point, then by server name.
    points: Vec<(u32, usize)>,
}

impl Ring {
    /// The ring of `servers` (`host:port` each, as configured).
    pub fn new(servers: &[String]) -> Ring {
        let mut points = Vec::with_capacity(servers.len() * DIGESTS * 4);
        for (index, server) in servers.iter().enumerate() {
            for i in 0..DIGESTS {
                let d = Md5::digest(format!("{server}-{i}").as_bytes());
                for k in 0..4 {
                    points.push((le32(&d[4 * k..4 * k + 4]), index));
                }
            }
        }
        points.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| servers[a.1].cmp(&servers[b.1])));
        Ring { points }
    }

    /// The index in the server list of the server that holds `key`; None without servers.
    pub fn server(&self, key: &str) -> Option<usize> {
        let h = point(key);
        let at = self.points.partition_point(|p| p.0 < h);
        self.points
            .get(at)
            .or_else(|| self.points.first())
            .map(|p| p.1)
    }
}

/// A key's place on the ring.
fn point(key: &str) -> u32 {
    le32(&Md5::digest(key.as_bytes())[..4])
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn points_are_libmemcached_s() {
        // MD5("127.0.0.1:11211-0") = e2 9c 57 9a 4e 0b 5e 58 ...: the first two points.
        let one = Ring::new(&names(&["127.0.0.1:11211"]));
        assert_eq!(one.points.len(), 160);
        assert!(one.points.contains(&(2_589_391_586, 0)));
        assert!(one.points.contains(&(1_482_608_462, 0)));
        assert_eq!(point("bizzy:v1:occ:1"), 2_363_571_986);
        assert_eq!(point("bizzy:v1:hive:42"), 3_966_043_524);
    }

    #[test]
    fn keys_land_where_ketama_puts_them() {
        let servers = names(&["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"]);
        let ring = Ring::new(&servers);
        let at = |k: &str| servers[ring.server(k).expect("servers")].as_str();
        assert_eq!(at("bizzy:v1:occ:1"), "10.0.0.3:11211");
        assert_eq!(at("bizzy:v1:hive:42"), "10.0.0.2:11211");
        assert_eq!(at("bizzy:v1:types"), "10.0.0.3:11211");
        assert_eq!(at("bizzy:v1:pass"), "10.0.0.1:11211");
    }

    #[test]
    fn the_order_of_the_list_does_not_matter() {
        let a = names(&["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"]);
        let b = names(&["10.0.0.3:11211", "10.0.0.1:11211", "10.0.0.2:11211"]);
        let (ra, rb) = (Ring::new(&a), Ring::new(&b));
        for i in 0..2000 {
            let k = format!("bizzy:v1:occ:{i}");
            assert_eq!(a[ra.server(&k).unwrap()], b[rb.server(&k).unwrap()], "{k}");
            assert_eq!(ra.server(&k), Ring::new(&a).server(&k), "{k}: stable");
        }
    }

    #[test]
    fn a_fourth_server_moves_about_a_quarter_of_the_keys() {
        let three = names(&["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"]);
        let mut four = three.clone();
        four.push("10.0.0.4:11211".into());
        let (r3, r4) = (Ring::new(&three), Ring::new(&four));
        let n = 10_000;
        let mut moved = 0;
        for i in 0..n {
            let k = format!("bizzy:v1:hive:{i}");
            let (before, after) = (r3.server(&k).unwrap(), r4.server(&k).unwrap());
            if before != after {
                assert_eq!(after, 3, "{k}: a key only moves to the new server");
                moved += 1;
            }
        }
        assert!((n / 8..n * 3 / 8).contains(&moved), "moved {moved} of {n}");
    }

    #[test]
    fn no_server_no_answer() {
        assert_eq!(Ring::new(&[]).server("bizzy:v1:types"), None);
        let one = Ring::new(&names(&["127.0.0.1:11211"]));
        assert_eq!(one.server("anything"), Some(0));
    }
}
