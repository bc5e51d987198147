//! Kernels (Debian packages or local), out-of-tree module builds and initramfs images, cached.
