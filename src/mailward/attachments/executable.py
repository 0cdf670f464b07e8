"""Windows executables: imports, packing, signature (pefile).

An executable in mail is already a dangerous type by policy; what this adds
is evidence for the analyst and for the sandbox decision: the imports that
droppers and injectors use, sections whose entropy says packed or
encrypted, and whether an Authenticode signature is present at all (it is
not verified here).

SECURITY: pefile parses the headers only (``fast_load``) and the import
directory, bounded by pefile's own limits; a malformed file is a finding.
"""

from __future__ import annotations

import logging

from mailward.attachments.files import FileNode, Note

_SUSPICIOUS_IMPORTS = {
    "VirtualAllocEx", "WriteProcessMemory", "CreateRemoteThread", "NtUnmapViewOfSection",
    "QueueUserAPC", "SetThreadContext", "ResumeThread", "URLDownloadToFileA",
    "URLDownloadToFileW", "InternetOpenUrlA", "InternetOpenUrlW", "WinExec", "ShellExecuteA",
    "ShellExecuteW", "IsDebuggerPresent", "CryptEncrypt", "SetWindowsHookExA",
    "SetWindowsHookExW", "GetAsyncKeyState", "AdjustTokenPrivileges", "LoadLibraryA",
    "GetProcAddress", "VirtualProtect", "RtlDecompressBuffer",
}
_ALONE_HARMLESS = {"LoadLibraryA", "GetProcAddress", "VirtualProtect"}
_PACKED_ENTROPY = 7.2


def pe_notes(node: FileNode) -> list[Note]:
    """pe_notes - what the headers of a PE file say about it."""
    import pefile

    logging.getLogger("pefile").setLevel(logging.CRITICAL)
    try:
        pe = pefile.PE(data=node.data, fast_load=True)
    except pefile.PEFormatError as error:
        return [Note("ATTACH_PE_MALFORMED", f"{node.path}: MZ header but not a valid PE "
                     f"({str(error)[:120]})")]
    notes: list[Note] = []
    try:
        pe.parse_data_directories(directories=[
            pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"]])
        imports = {imp.name.decode("latin-1", "replace") for entry in
                   getattr(pe, "DIRECTORY_ENTRY_IMPORT", [])[:200] for imp in entry.imports[:2000]
                   if imp.name}
        flagged = sorted(imports & _SUSPICIOUS_IMPORTS)
        if flagged and set(flagged) - _ALONE_HARMLESS:
            notes.append(Note("ATTACH_PE_SUSPICIOUS_IMPORTS", f"{node.path}: imports "
                              f"{', '.join(flagged[:8])}", {"imports": flagged}))
        packed = [(s.Name.rstrip(b"\0").decode("latin-1", "replace"), round(s.get_entropy(), 2))
                  for s in pe.sections[:96] if s.SizeOfRawData > 1024
                  and s.get_entropy() >= _PACKED_ENTROPY]
        if packed:
            notes.append(Note("ATTACH_PE_PACKED", f"{node.path}: packed or encrypted sections "
                              f"{', '.join(f'{n} ({e})' for n, e in packed[:4])}",
                              {"sections": packed}))
        security = pe.OPTIONAL_HEADER.DATA_DIRECTORY[
            pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_SECURITY"]]
        if not security.VirtualAddress or not security.Size:
            notes.append(Note("ATTACH_PE_UNSIGNED", f"{node.path}: no Authenticode signature"))
    except (pefile.PEFormatError, IndexError, AttributeError, ValueError) as error:
        notes.append(Note("ATTACH_PE_MALFORMED", f"{node.path}: {str(error)[:160]}"))
    finally:
        pe.close()
    return notes
