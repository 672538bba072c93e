//! Raw declarations of the librados and librbd C functions the crate uses,
//! written by hand from Ceph 16's `rados/librados.h` and `rbd/librbd.h`
//! (no bindgen: the surface is small and stable across Ceph releases).
//!
//! Why not the `ceph` crate for librados: its 3.2.5 builds and runs against
//! Ceph 16, but `connect_to_ceph` creates, reads the conf file and connects
//! in one call, so neither a keyring nor the mount/op timeouts can be set
//! before connecting (a bad configuration then blocks for minutes instead
//! of failing fast); a failed connect leaks the cluster handle; its object
//! listing ends silently on an error (a truncated list looks complete,
//! which a garbage collector must never see); and it pulls nix 0.18, nom 5,
//! uuid 0.8 and bitflags 1 into the workspace with future-incompatibility
//! warnings. The ~35 librados functions needed here are simpler to declare.
//!
//! Built without the libraries (`ember_ceph_stub`, see `build.rs`), every
//! function is a stub that returns `-ENOSYS` (or does nothing).

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_void};

use nix::libc::{time_t, timeval};

/// A cluster handle (`rados_t`).
pub type rados_t = *mut c_void;
/// An I/O context on one pool (`rados_ioctx_t`).
pub type rados_ioctx_t = *mut c_void;
/// An object-listing cursor (`rados_list_ctx_t`).
pub type rados_list_ctx_t = *mut c_void;
/// A compound write operation on one object (`rados_write_op_t`).
pub type rados_write_op_t = *mut c_void;
/// A compound read operation on one object (`rados_read_op_t`).
pub type rados_read_op_t = *mut c_void;
/// An open image (`rbd_image_t`).
pub type rbd_image_t = *mut c_void;
/// A set of image-creation options (`rbd_image_options_t`).
pub type rbd_image_options_t = *mut c_void;

/// `rbd_diff_iterate2`'s callback: offset, length, whether the extent holds
/// data (1) or is known to be zero (0), and the opaque argument.
pub type rbd_diff_cb = unsafe extern "C" fn(u64, usize, c_int, *mut c_void) -> c_int;

/// An asynchronous I/O's completion (`rbd_completion_t`).
pub type rbd_completion_t = *mut c_void;
/// `rbd_callback_t`: called when an asynchronous I/O completes.
pub type rbd_callback_t = unsafe extern "C" fn(rbd_completion_t, *mut c_void);

/// `rbd_image_spec_t`: one image of a pool listing.
#[repr(C)]
pub struct rbd_image_spec_t {
    pub id: *mut c_char,
    pub name: *mut c_char,
}

/// `rbd_snap_info_t`: one snapshot of a snapshot listing.
#[repr(C)]
pub struct rbd_snap_info_t {
    pub id: u64,
    pub size: u64,
    pub name: *const c_char,
}

/// `RBD_MAX_BLOCK_NAME_SIZE`.
const RBD_MAX_BLOCK_NAME_SIZE: usize = 24;
/// `RBD_MAX_IMAGE_NAME_SIZE`.
const RBD_MAX_IMAGE_NAME_SIZE: usize = 96;

/// `rbd_image_info_t`, filled by `rbd_stat`.
#[repr(C)]
pub struct rbd_image_info_t {
    pub size: u64,
    pub obj_size: u64,
    pub num_objs: u64,
    pub order: c_int,
    pub block_name_prefix: [c_char; RBD_MAX_BLOCK_NAME_SIZE],
    pub parent_pool: i64,
    pub parent_name: [c_char; RBD_MAX_IMAGE_NAME_SIZE],
}

/// `RBD_IMAGE_OPTION_*` keys of `rbd_image_options_set_*`.
pub const RBD_IMAGE_OPTION_FEATURES: c_int = 1;
pub const RBD_IMAGE_OPTION_ORDER: c_int = 2;
pub const RBD_IMAGE_OPTION_STRIPE_UNIT: c_int = 3;
pub const RBD_IMAGE_OPTION_STRIPE_COUNT: c_int = 4;
pub const RBD_IMAGE_OPTION_DATA_POOL: c_int = 10;

/// `LIBRADOS_CREATE_EXCLUSIVE`: `rados_write_op_create` fails with EEXIST
/// if the object exists.
pub const LIBRADOS_CREATE_EXCLUSIVE: c_int = 1;
/// `LIBRADOS_CMPXATTR_OP_EQ` and `_NE`: the comparisons of
/// `rados_*_op_cmpxattr` (an absent attribute compares as empty).
pub const LIBRADOS_CMPXATTR_OP_EQ: u8 = 1;
pub const LIBRADOS_CMPXATTR_OP_NE: u8 = 2;
/// `LIBRADOS_LOCK_FLAG_MUST_RENEW`: renew a lock this client holds, and
/// fail with ENOENT if it no longer does.
pub const LIBRADOS_LOCK_FLAG_MUST_RENEW: u8 = 1 << 1;

/// What a stub returns in place of the real function.
#[cfg(ember_ceph_stub)]
pub trait StubReturn {
    fn stub() -> Self;
}
#[cfg(ember_ceph_stub)]
impl StubReturn for c_int {
    fn stub() -> Self {
        -(nix::errno::Errno::ENOSYS as c_int)
    }
}
#[cfg(ember_ceph_stub)]
impl StubReturn for isize {
    fn stub() -> Self {
        -(nix::errno::Errno::ENOSYS as isize)
    }
}
#[cfg(ember_ceph_stub)]
impl StubReturn for () {
    fn stub() -> Self {}
}
#[cfg(ember_ceph_stub)]
impl StubReturn for *mut c_void {
    fn stub() -> Self {
        std::ptr::null_mut()
    }
}

/// Declares the functions of one library: real `extern "C"` declarations,
/// or stubs in a build without the library.
macro_rules! ceph_ffi {
    ($lib:literal; $( pub fn $name:ident( $($arg:ident : $ty:ty),* $(,)? ) $(-> $ret:ty)?; )*) => {
        #[cfg(not(ember_ceph_stub))]
        #[link(name = $lib)]
        extern "C" {
            $( pub fn $name($($arg: $ty),*) $(-> $ret)?; )*
        }
        $(
            #[cfg(ember_ceph_stub)]
            #[allow(unused_variables, clippy::missing_safety_doc)]
            pub unsafe extern "C" fn $name($($arg: $ty),*) $(-> $ret)? {
                StubReturn::stub()
            }
        )*
    };
}

ceph_ffi! { "rados";
    pub fn rados_version(major: *mut c_int, minor: *mut c_int, extra: *mut c_int);
    pub fn rados_create2(cluster: *mut rados_t, cluster_name: *const c_char, name: *const c_char, flags: u64) -> c_int;
    pub fn rados_conf_read_file(cluster: rados_t, path: *const c_char) -> c_int;
    pub fn rados_conf_set(cluster: rados_t, option: *const c_char, value: *const c_char) -> c_int;
    pub fn rados_connect(cluster: rados_t) -> c_int;
    pub fn rados_shutdown(cluster: rados_t);
    pub fn rados_ioctx_create(cluster: rados_t, pool_name: *const c_char, ioctx: *mut rados_ioctx_t) -> c_int;
    pub fn rados_ioctx_destroy(io: rados_ioctx_t);
    pub fn rados_write_full(io: rados_ioctx_t, oid: *const c_char, buf: *const c_char, len: usize) -> c_int;
    pub fn rados_write(io: rados_ioctx_t, oid: *const c_char, buf: *const c_char, len: usize, off: u64) -> c_int;
    pub fn rados_read(io: rados_ioctx_t, oid: *const c_char, buf: *mut c_char, len: usize, off: u64) -> c_int;
    pub fn rados_stat(io: rados_ioctx_t, oid: *const c_char, psize: *mut u64, pmtime: *mut i64) -> c_int;
    pub fn rados_remove(io: rados_ioctx_t, oid: *const c_char) -> c_int;
    pub fn rados_getxattr(io: rados_ioctx_t, oid: *const c_char, name: *const c_char, buf: *mut c_char, len: usize) -> c_int;
    pub fn rados_setxattr(io: rados_ioctx_t, oid: *const c_char, name: *const c_char, buf: *const c_char, len: usize) -> c_int;
    pub fn rados_nobjects_list_open(io: rados_ioctx_t, ctx: *mut rados_list_ctx_t) -> c_int;
    pub fn rados_nobjects_list_next(ctx: rados_list_ctx_t, entry: *mut *const c_char, key: *mut *const c_char, nspace: *mut *const c_char) -> c_int;
    pub fn rados_nobjects_list_close(ctx: rados_list_ctx_t);
    pub fn rados_create_write_op() -> rados_write_op_t;
    pub fn rados_release_write_op(write_op: rados_write_op_t);
    pub fn rados_write_op_assert_exists(write_op: rados_write_op_t);
    pub fn rados_write_op_cmpxattr(write_op: rados_write_op_t, name: *const c_char, comparison_operator: u8, value: *const c_char, value_len: usize);
    pub fn rados_write_op_setxattr(write_op: rados_write_op_t, name: *const c_char, value: *const c_char, value_len: usize);
    pub fn rados_write_op_create(write_op: rados_write_op_t, exclusive: c_int, category: *const c_char);
    pub fn rados_write_op_write(write_op: rados_write_op_t, buffer: *const c_char, len: usize, offset: u64);
    pub fn rados_write_op_write_full(write_op: rados_write_op_t, buffer: *const c_char, len: usize);
    pub fn rados_write_op_remove(write_op: rados_write_op_t);
    pub fn rados_write_op_operate(write_op: rados_write_op_t, io: rados_ioctx_t, oid: *const c_char, mtime: *mut time_t, flags: c_int) -> c_int;
    pub fn rados_create_read_op() -> rados_read_op_t;
    pub fn rados_release_read_op(read_op: rados_read_op_t);
    pub fn rados_read_op_cmpxattr(read_op: rados_read_op_t, name: *const c_char, comparison_operator: u8, value: *const c_char, value_len: usize);
    pub fn rados_read_op_read(read_op: rados_read_op_t, offset: u64, len: usize, buffer: *mut c_char, bytes_read: *mut usize, prval: *mut c_int);
    pub fn rados_read_op_operate(read_op: rados_read_op_t, io: rados_ioctx_t, oid: *const c_char, flags: c_int) -> c_int;
    pub fn rados_lock_exclusive(io: rados_ioctx_t, oid: *const c_char, name: *const c_char, cookie: *const c_char, desc: *const c_char, duration: *mut timeval, flags: u8) -> c_int;
    pub fn rados_list_lockers(io: rados_ioctx_t, o: *const c_char, name: *const c_char, exclusive: *mut c_int, tag: *mut c_char, tag_len: *mut usize, clients: *mut c_char, clients_len: *mut usize, cookies: *mut c_char, cookies_len: *mut usize, addrs: *mut c_char, addrs_len: *mut usize) -> isize;
}

ceph_ffi! { "rbd";
    pub fn rbd_version(major: *mut c_int, minor: *mut c_int, extra: *mut c_int);
    pub fn rbd_image_options_create(opts: *mut rbd_image_options_t);
    pub fn rbd_image_options_destroy(opts: rbd_image_options_t);
    pub fn rbd_image_options_set_uint64(opts: rbd_image_options_t, optname: c_int, optval: u64) -> c_int;
    pub fn rbd_image_options_set_string(opts: rbd_image_options_t, optname: c_int, optval: *const c_char) -> c_int;
    pub fn rbd_create4(io: rados_ioctx_t, name: *const c_char, size: u64, opts: rbd_image_options_t) -> c_int;
    pub fn rbd_clone3(p_ioctx: rados_ioctx_t, p_name: *const c_char, p_snapname: *const c_char, c_ioctx: rados_ioctx_t, c_name: *const c_char, c_opts: rbd_image_options_t) -> c_int;
    pub fn rbd_remove(io: rados_ioctx_t, name: *const c_char) -> c_int;
    pub fn rbd_list2(io: rados_ioctx_t, images: *mut rbd_image_spec_t, max_images: *mut usize) -> c_int;
    pub fn rbd_image_spec_list_cleanup(images: *mut rbd_image_spec_t, num_images: usize);
    pub fn rbd_open(io: rados_ioctx_t, name: *const c_char, image: *mut rbd_image_t, snap_name: *const c_char) -> c_int;
    pub fn rbd_open_read_only(io: rados_ioctx_t, name: *const c_char, image: *mut rbd_image_t, snap_name: *const c_char) -> c_int;
    pub fn rbd_close(image: rbd_image_t) -> c_int;
    pub fn rbd_stat(image: rbd_image_t, info: *mut rbd_image_info_t, infosize: usize) -> c_int;
    pub fn rbd_get_size(image: rbd_image_t, size: *mut u64) -> c_int;
    pub fn rbd_get_features(image: rbd_image_t, features: *mut u64) -> c_int;
    pub fn rbd_get_stripe_unit(image: rbd_image_t, stripe_unit: *mut u64) -> c_int;
    pub fn rbd_get_stripe_count(image: rbd_image_t, stripe_count: *mut u64) -> c_int;
    pub fn rbd_resize(image: rbd_image_t, size: u64) -> c_int;
    pub fn rbd_flatten(image: rbd_image_t) -> c_int;
    pub fn rbd_read2(image: rbd_image_t, ofs: u64, len: usize, buf: *mut c_char, op_flags: c_int) -> isize;
    pub fn rbd_write2(image: rbd_image_t, ofs: u64, len: usize, buf: *const c_char, op_flags: c_int) -> isize;
    pub fn rbd_discard(image: rbd_image_t, ofs: u64, len: u64) -> c_int;
    pub fn rbd_write_zeroes(image: rbd_image_t, ofs: u64, len: usize, zero_flags: c_int, op_flags: c_int) -> isize;
    pub fn rbd_flush(image: rbd_image_t) -> c_int;
    pub fn rbd_aio_create_completion(cb_arg: *mut c_void, complete_cb: Option<rbd_callback_t>, c: *mut rbd_completion_t) -> c_int;
    pub fn rbd_aio_read2(image: rbd_image_t, off: u64, len: usize, buf: *mut c_char, c: rbd_completion_t, op_flags: c_int) -> c_int;
    pub fn rbd_aio_write2(image: rbd_image_t, off: u64, len: usize, buf: *const c_char, c: rbd_completion_t, op_flags: c_int) -> c_int;
    pub fn rbd_aio_wait_for_complete(c: rbd_completion_t) -> c_int;
    pub fn rbd_aio_get_return_value(c: rbd_completion_t) -> isize;
    pub fn rbd_aio_release(c: rbd_completion_t);
    pub fn rbd_snap_create(image: rbd_image_t, snapname: *const c_char) -> c_int;
    pub fn rbd_snap_list(image: rbd_image_t, snaps: *mut rbd_snap_info_t, max_snaps: *mut c_int) -> c_int;
    pub fn rbd_snap_list_end(snaps: *mut rbd_snap_info_t);
    pub fn rbd_snap_remove(image: rbd_image_t, snapname: *const c_char) -> c_int;
    pub fn rbd_snap_set(image: rbd_image_t, snapname: *const c_char) -> c_int;
    pub fn rbd_snap_protect(image: rbd_image_t, snap_name: *const c_char) -> c_int;
    pub fn rbd_snap_unprotect(image: rbd_image_t, snap_name: *const c_char) -> c_int;
    pub fn rbd_snap_is_protected(image: rbd_image_t, snap_name: *const c_char, is_protected: *mut c_int) -> c_int;
    pub fn rbd_diff_iterate2(image: rbd_image_t, fromsnapname: *const c_char, ofs: u64, len: u64, include_parent: u8, whole_object: u8, cb: Option<rbd_diff_cb>, arg: *mut c_void) -> c_int;
}
