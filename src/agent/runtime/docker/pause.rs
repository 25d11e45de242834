//! The pod sandbox's image, made on the spot: a root filesystem holding one static program, `/pause`, which
//! holds the pod's namespaces and does nothing else. No registry is needed, and nothing but these bytes.
//!
//! The program (x86-64 Linux, 112 bytes of code in a 120-byte ELF header) blocks SIGINT, SIGTERM and SIGCHLD
//! and waits for them with `rt_sigtimedwait`: SIGINT or SIGTERM ends it with status 0, SIGCHLD reaps every
//! exited child (it is the pod's PID 1 when the pod shares its process namespace). Blocked signals reach a
//! namespace's init even without handlers, which is why it waits for them rather than installing any.
//!
//! ```text
//! _start: mov eax, 14           ; rt_sigprocmask(SIG_BLOCK, &set, NULL, 8)
//!         xor edi, edi
//!         lea rsi, [rip+set]
//!         xor edx, edx
//!         mov r10d, 8
//!         syscall
//! wait:   mov eax, 128          ; rt_sigtimedwait(&set, NULL, NULL, 8)
//!         lea rdi, [rip+set]
//!         xor esi, esi
//!         xor edx, edx
//!         mov r10d, 8
//!         syscall
//!         cmp eax, 17           ; SIGCHLD
//!         je reap
//!         cmp eax, 15           ; SIGTERM
//!         je done
//!         cmp eax, 2            ; SIGINT
//!         je done
//!         jmp wait
//! reap:   mov eax, 61           ; wait4(-1, NULL, WNOHANG, NULL), until no child is left to reap
//!         mov edi, -1
//!         xor esi, esi
//!         mov edx, 1
//!         xor r10d, r10d
//!         syscall
//!         test eax, eax
//!         jg reap
//!         jmp wait
//! done:   mov eax, 231          ; exit_group(0)
//!         xor edi, edi
//!         syscall
//!         .p2align 3
//! set:    .quad (1 << 1) | (1 << 14) | (1 << 16)   ; SIGINT, SIGTERM, SIGCHLD
//! ```

/// The machine code above, as the GNU assembler encodes it.
#[rustfmt::skip]
const CODE: [u8; 112] = [
    0xb8, 0x0e, 0x00, 0x00, 0x00, 0x31, 0xff, 0x48, 0x8d, 0x35, 0x5a, 0x00, 0x00, 0x00, 0x31, 0xd2,
    0x41, 0xba, 0x08, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xb8, 0x80, 0x00, 0x00, 0x00, 0x48, 0x8d, 0x3d,
    0x44, 0x00, 0x00, 0x00, 0x31, 0xf6, 0x31, 0xd2, 0x41, 0xba, 0x08, 0x00, 0x00, 0x00, 0x0f, 0x05,
    0x83, 0xf8, 0x11, 0x74, 0x0c, 0x83, 0xf8, 0x0f, 0x74, 0x23, 0x83, 0xf8, 0x02, 0x74, 0x1e, 0xeb,
    0xd7, 0xb8, 0x3d, 0x00, 0x00, 0x00, 0xbf, 0xff, 0xff, 0xff, 0xff, 0x31, 0xf6, 0xba, 0x01, 0x00,
    0x00, 0x00, 0x45, 0x31, 0xd2, 0x0f, 0x05, 0x85, 0xc0, 0x7f, 0xe6, 0xeb, 0xbb, 0xb8, 0xe7, 0x00,
    0x00, 0x00, 0x31, 0xff, 0x0f, 0x05, 0x66, 0x90, 0x02, 0x40, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// Where the file is loaded: the whole file is one read-and-execute segment.
const BASE: u64 = 0x40_0000;
const ELF_HEADER_BYTES: u16 = 64;
const PROGRAM_HEADER_BYTES: u16 = 56;

/// The program as a static ELF executable, or `None` on a machine it was not written for.
pub fn program() -> Option<Vec<u8>> {
    if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        return None;
    }
    let headers = u64::from(ELF_HEADER_BYTES + PROGRAM_HEADER_BYTES);
    let size = headers + CODE.len() as u64;
    let mut elf = Vec::with_capacity(size as usize);
    // ELF header: 64-bit, little-endian, version 1, System V ABI; an executable for x86-64.
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // e_type: ET_EXEC
    elf.extend_from_slice(&62u16.to_le_bytes()); // e_machine: EM_X86_64
    elf.extend_from_slice(&1u32.to_le_bytes()); // e_version
    elf.extend_from_slice(&(BASE + headers).to_le_bytes()); // e_entry: the first byte of code
    elf.extend_from_slice(&u64::from(ELF_HEADER_BYTES).to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff: no sections
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    elf.extend_from_slice(&ELF_HEADER_BYTES.to_le_bytes()); // e_ehsize
    elf.extend_from_slice(&PROGRAM_HEADER_BYTES.to_le_bytes()); // e_phentsize
    elf.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    elf.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
                                    // Program header: the whole file, loaded at BASE, readable and executable.
    elf.extend_from_slice(&1u32.to_le_bytes()); // p_type: PT_LOAD
    elf.extend_from_slice(&5u32.to_le_bytes()); // p_flags: PF_R | PF_X
    elf.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    elf.extend_from_slice(&BASE.to_le_bytes()); // p_vaddr
    elf.extend_from_slice(&BASE.to_le_bytes()); // p_paddr
    elf.extend_from_slice(&size.to_le_bytes()); // p_filesz
    elf.extend_from_slice(&size.to_le_bytes()); // p_memsz
    elf.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    elf.extend_from_slice(&CODE);
    Some(elf)
}

/// A root filesystem (an uncompressed tar) holding `/pause`, for `docker import`.
pub fn root_filesystem() -> Option<Vec<u8>> {
    let program = program()?;
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(program.len() as u64);
    header.set_mode(0o755);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, "pause", program.as_slice()).ok()?;
    tar.into_inner().ok()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::ExitStatusExt;
    use std::time::{Duration, Instant};

    use super::*;

    /// Waits for `child` to exit, for at most `limit`.
    fn wait(child: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    #[test]
    fn the_program_waits_and_ends_on_sigterm_and_sigint_with_status_zero() {
        let Some(program) = program() else { return };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pause");
        std::fs::write(&path, &program).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        for signal in [libc::SIGTERM, libc::SIGINT] {
            let mut child = std::process::Command::new(&path).spawn().unwrap();
            // Still waiting after a SIGCHLD with no child to reap and a signal it does not wait for.
            std::thread::sleep(Duration::from_millis(100));
            // SAFETY: kill(2) touches no memory; the child is ours and not yet reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGCHLD) };
            // SAFETY: as above.
            unsafe { libc::kill(child.id() as i32, libc::SIGWINCH) };
            assert!(wait(&mut child, Duration::from_millis(200)).is_none(), "it waits");
            // SAFETY: as above.
            unsafe { libc::kill(child.id() as i32, signal) };
            let status = wait(&mut child, Duration::from_secs(5)).expect("it ends");
            assert_eq!((status.code(), status.signal()), (Some(0), None));
        }
    }

    #[test]
    fn the_root_filesystem_holds_the_program_alone_and_executable() {
        let Some(tar) = root_filesystem() else { return };
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<(String, u32, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.header().mode().unwrap(), e.size())
            })
            .collect();
        assert_eq!(entries, vec![("pause".to_owned(), 0o755, program().unwrap().len() as u64)]);
    }
}
