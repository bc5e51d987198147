//! Stage 2 of a scenario: starting QEMU (and the ivshmem doorbell server a host-raised storm
//! needs beside it) in a private scratch directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use modharness_vm::ivshmem::DoorbellServer;
use modharness_vm::{self as vm, VmConfig};

use crate::error::{Failure, Result};

/// How long the guest may take to connect its serial ports after QEMU starts.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A started VM and the doorbell server of its host-raised storms, if it has one.
pub(crate) struct Started {
    pub machine: vm::Vm,
    pub doorbell: Option<Arc<DoorbellServer>>,
}

/// Start QEMU for `config`, and the doorbell server first when the config has a doorbell: QEMU
/// waits for the server's handshake while it builds the machine. A QEMU that cannot start is an
/// infrastructure failure carrying QEMU's stderr.
pub(crate) async fn start(config: &VmConfig) -> Result<Started> {
    let doorbell = match &config.doorbell {
        Some(socket) => {
            let mut server = DoorbellServer::bind(socket, vm::argv::DOORBELL_VECTORS, 1 << 20)
                .map_err(|e| Failure::infra(format!("{}: {e}", socket.display())))?;
            Some(tokio::spawn(async move {
                tokio::time::timeout(START_TIMEOUT, server.accept()).await??;
                std::io::Result::Ok(Arc::new(server))
            }))
        }
        None => None,
    };
    let machine = vm::launch(config, START_TIMEOUT)
        .await
        .map_err(Failure::infra)?;
    let doorbell = match doorbell {
        Some(task) => Some(
            task.await
                .map_err(Failure::infra)?
                .map_err(|e| Failure::infra(format!("ivshmem doorbell: {e}")))?,
        ),
        None => None,
    };
    Ok(Started { machine, doorbell })
}

/// A private scratch directory (sockets, initrd), removed when dropped. Kept under the system's
/// temp dir: unix socket paths must stay short.
pub(crate) struct WorkDir {
    pub path: PathBuf,
}

impl WorkDir {
    /// A new, empty directory of its own.
    pub fn new() -> Result<WorkDir> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "modharness-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path)
            .map_err(|e| Failure::infra(format!("{}: {e}", path.display())))?;
        Ok(WorkDir { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
