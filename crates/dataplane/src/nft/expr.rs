//! Rule expressions as data, turned into libnftnl expressions (the safe `nftnl` crate
//! lacks numgen, jhash, lookups with data registers and NAT from registers).

use std::ffi::{c_void, CString};
use std::ptr::NonNull;

use nftnl::nftnl_sys as sys;

/// enum nft_hash_types: NFT_HASH_JENKINS (nf_tables.h; not in libc).
const NFT_HASH_JENKINS: u32 = 0;

/// NFT_DYNSET_OP_UPDATE (enum nft_dynset_ops, nf_tables.h): add the element, or
/// restart the timeout of the one that is there.
pub const NFT_DYNSET_OP_UPDATE: u32 = 1;

/// The 32-bit register `n` (NFT_REG32_00 + n): concatenations pack fields into them.
pub const fn reg(n: u32) -> u32 {
    libc::NFT_REG32_00 as u32 + n
}

/// One nf_tables expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// meta load `key` => `dreg`.
    Meta { key: u32, dreg: u32 },
    /// cmp `op` `sreg` with `data`.
    Cmp { sreg: u32, op: u32, data: Vec<u8> },
    /// payload load `len` bytes at `base` + `offset` => `dreg`.
    Payload {
        base: u32,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    /// ct load `key` of direction `dir` (0 original, 1 reply) => `dreg`.
    Ct { key: u32, dir: u8, dreg: u32 },
    /// numgen `kind` mod `modulus` => `dreg`.
    Numgen { kind: u32, modulus: u32, dreg: u32 },
    /// jhash of `len` bytes at `sreg` mod `modulus` seed `seed` => `dreg`.
    Jhash {
        sreg: u32,
        len: u32,
        modulus: u32,
        seed: u32,
        dreg: u32,
    },
    /// lookup `sreg` in `set` (=> `dreg` for maps).
    Lookup {
        set: String,
        sreg: u32,
        dreg: Option<u32>,
    },
    /// `dreg` = (`sreg` & `mask`) ^ `xor`, over `mask.len()` bytes.
    Bitwise {
        sreg: u32,
        dreg: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    /// Writes the key at `sreg_key` (and the data at `sreg_data`) into `set` from the
    /// packet path: `op` is one of enum nft_dynset_ops (NFT_DYNSET_OP_UPDATE: add, or
    /// restart the timeout of the element that is there); `timeout_ms` 0: the set's.
    Dynset {
        op: u32,
        set: String,
        sreg_key: u32,
        sreg_data: Option<u32>,
        timeout_ms: u64,
    },
    /// immediate `data` => `dreg`.
    Immediate { dreg: u32, data: Vec<u8> },
    /// snat/dnat from registers.
    Nat {
        snat: bool,
        v4: bool,
        addr_min: Option<u32>,
        addr_max: Option<u32>,
        proto_min: Option<u32>,
        proto_max: Option<u32>,
    },
}

/// An owned libnftnl expression, freed unless handed to a rule.
pub struct RawExpr(NonNull<sys::nftnl_expr>);

impl RawExpr {
    fn new(name: &std::ffi::CStr) -> RawExpr {
        // SAFETY: a valid NUL-terminated name; a null result means out of memory.
        let p = unsafe { sys::nftnl_expr_alloc(name.as_ptr()) };
        match NonNull::new(p) {
            Some(p) => RawExpr(p),
            // Like std on allocation failure.
            None => std::process::abort(),
        }
    }

    fn u32(&self, attr: u32, v: u32) {
        // SAFETY: self is a live expression; the attribute id is one of its own.
        unsafe { sys::nftnl_expr_set_u32(self.0.as_ptr(), attr as u16, v) }
    }

    fn u8(&self, attr: u32, v: u8) {
        // SAFETY: as above.
        unsafe { sys::nftnl_expr_set_u8(self.0.as_ptr(), attr as u16, v) }
    }

    fn data(&self, attr: u32, d: &[u8]) {
        // SAFETY: libnftnl copies `d.len()` bytes.
        unsafe {
            sys::nftnl_expr_set(
                self.0.as_ptr(),
                attr as u16,
                d.as_ptr().cast::<c_void>(),
                d.len() as u32,
            );
        }
    }

    fn str(&self, attr: u32, s: &str) {
        // Set names come from our own layout: no NUL inside.
        let c = CString::new(s.replace('\0', "")).unwrap_or_default();
        // SAFETY: libnftnl copies the string.
        unsafe { sys::nftnl_expr_set_str(self.0.as_ptr(), attr as u16, c.as_ptr()) };
    }

    /// Hands the expression to a rule (which frees it).
    pub fn into_raw(self) -> *mut sys::nftnl_expr {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }
}

impl Drop for RawExpr {
    fn drop(&mut self) {
        // SAFETY: owned and not handed to a rule.
        unsafe { sys::nftnl_expr_free(self.0.as_ptr()) }
    }
}

impl Expr {
    /// The libnftnl expression.
    pub fn build(&self) -> RawExpr {
        match self {
            Expr::Meta { key, dreg } => {
                let e = RawExpr::new(c"meta");
                e.u32(sys::NFTNL_EXPR_META_KEY, *key);
                e.u32(sys::NFTNL_EXPR_META_DREG, *dreg);
                e
            }
            Expr::Cmp { sreg, op, data } => {
                let e = RawExpr::new(c"cmp");
                e.u32(sys::NFTNL_EXPR_CMP_SREG, *sreg);
                e.u32(sys::NFTNL_EXPR_CMP_OP, *op);
                e.data(sys::NFTNL_EXPR_CMP_DATA, data);
                e
            }
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                let e = RawExpr::new(c"payload");
                e.u32(sys::NFTNL_EXPR_PAYLOAD_BASE, *base);
                e.u32(sys::NFTNL_EXPR_PAYLOAD_OFFSET, *offset);
                e.u32(sys::NFTNL_EXPR_PAYLOAD_LEN, *len);
                e.u32(sys::NFTNL_EXPR_PAYLOAD_DREG, *dreg);
                e
            }
            Expr::Ct { key, dir, dreg } => {
                let e = RawExpr::new(c"ct");
                e.u32(sys::NFTNL_EXPR_CT_KEY, *key);
                e.u8(sys::NFTNL_EXPR_CT_DIR, *dir);
                e.u32(sys::NFTNL_EXPR_CT_DREG, *dreg);
                e
            }
            Expr::Numgen {
                kind,
                modulus,
                dreg,
            } => {
                let e = RawExpr::new(c"numgen");
                e.u32(sys::NFTNL_EXPR_NG_TYPE, *kind);
                e.u32(sys::NFTNL_EXPR_NG_MODULUS, *modulus);
                e.u32(sys::NFTNL_EXPR_NG_DREG, *dreg);
                e
            }
            Expr::Jhash {
                sreg,
                len,
                modulus,
                seed,
                dreg,
            } => {
                let e = RawExpr::new(c"hash");
                e.u32(sys::NFTNL_EXPR_HASH_TYPE, NFT_HASH_JENKINS);
                e.u32(sys::NFTNL_EXPR_HASH_SREG, *sreg);
                e.u32(sys::NFTNL_EXPR_HASH_LEN, *len);
                e.u32(sys::NFTNL_EXPR_HASH_MODULUS, *modulus);
                e.u32(sys::NFTNL_EXPR_HASH_SEED, *seed);
                e.u32(sys::NFTNL_EXPR_HASH_DREG, *dreg);
                e
            }
            Expr::Lookup { set, sreg, dreg } => {
                let e = RawExpr::new(c"lookup");
                e.str(sys::NFTNL_EXPR_LOOKUP_SET, set);
                e.u32(sys::NFTNL_EXPR_LOOKUP_SREG, *sreg);
                if let Some(d) = dreg {
                    e.u32(sys::NFTNL_EXPR_LOOKUP_DREG, *d);
                }
                e
            }
            Expr::Bitwise {
                sreg,
                dreg,
                mask,
                xor,
            } => {
                let e = RawExpr::new(c"bitwise");
                e.u32(sys::NFTNL_EXPR_BITWISE_SREG, *sreg);
                e.u32(sys::NFTNL_EXPR_BITWISE_DREG, *dreg);
                e.u32(sys::NFTNL_EXPR_BITWISE_LEN, mask.len() as u32);
                e.data(sys::NFTNL_EXPR_BITWISE_MASK, mask);
                e.data(sys::NFTNL_EXPR_BITWISE_XOR, xor);
                e
            }
            Expr::Dynset {
                op,
                set,
                sreg_key,
                sreg_data,
                timeout_ms,
            } => {
                let e = RawExpr::new(c"dynset");
                e.u32(sys::NFTNL_EXPR_DYNSET_OP, *op);
                e.str(sys::NFTNL_EXPR_DYNSET_SET_NAME, set);
                e.u32(sys::NFTNL_EXPR_DYNSET_SREG_KEY, *sreg_key);
                if let Some(d) = sreg_data {
                    e.u32(sys::NFTNL_EXPR_DYNSET_SREG_DATA, *d);
                }
                if *timeout_ms > 0 {
                    // SAFETY: live expression; plain setter.
                    unsafe {
                        sys::nftnl_expr_set_u64(
                            e.0.as_ptr(),
                            sys::NFTNL_EXPR_DYNSET_TIMEOUT as u16,
                            *timeout_ms,
                        )
                    };
                }
                e
            }
            Expr::Immediate { dreg, data } => {
                let e = RawExpr::new(c"immediate");
                e.u32(sys::NFTNL_EXPR_IMM_DREG, *dreg);
                e.data(sys::NFTNL_EXPR_IMM_DATA, data);
                e
            }
            Expr::Nat {
                snat,
                v4,
                addr_min,
                addr_max,
                proto_min,
                proto_max,
            } => {
                let e = RawExpr::new(c"nat");
                let kind = if *snat {
                    libc::NFT_NAT_SNAT
                } else {
                    libc::NFT_NAT_DNAT
                };
                e.u32(sys::NFTNL_EXPR_NAT_TYPE, kind as u32);
                let fam = if *v4 {
                    libc::NFPROTO_IPV4
                } else {
                    libc::NFPROTO_IPV6
                };
                e.u32(sys::NFTNL_EXPR_NAT_FAMILY, fam as u32);
                let regs = [
                    (sys::NFTNL_EXPR_NAT_REG_ADDR_MIN, addr_min),
                    (sys::NFTNL_EXPR_NAT_REG_ADDR_MAX, addr_max),
                    (sys::NFTNL_EXPR_NAT_REG_PROTO_MIN, proto_min),
                    (sys::NFTNL_EXPR_NAT_REG_PROTO_MAX, proto_max),
                ];
                for (attr, r) in regs {
                    if let Some(r) = r {
                        e.u32(attr, *r);
                    }
                }
                e
            }
        }
    }
}
