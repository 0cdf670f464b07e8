/*
 * Office documents whose macros start on their own and reach for a shell,
 * a download or a process. Matched on the OLE container of a .doc/.xls/.ppt
 * or a vbaProject.bin: the VBA project's identifier table keeps the names
 * of the procedures and objects a macro uses in plain text.
 */

private rule mw_ole_container
{
    condition:
        uint32be(0) == 0xD0CF11E0 and uint32be(4) == 0xA1B11AE1
}

private rule mw_vba_project
{
    strings:
        $project = "_VBA_PROJECT" wide ascii
        $attribute = "Attribute VB_Name" ascii nocase
    condition:
        any of them
}

rule mw_macro_autoexec_shell
{
    meta:
        description = "Office macro that runs on open and starts a program or a download"
        severity = "malicious"
        category = "malware"
    strings:
        $auto1 = "AutoOpen" ascii nocase
        $auto2 = "Document_Open" ascii nocase
        $auto3 = "Workbook_Open" ascii nocase
        $auto4 = "Auto_Open" ascii nocase
        $auto5 = "Document_Close" ascii nocase
        $auto6 = "AutoClose" ascii nocase
        $run1 = "WScript.Shell" ascii nocase
        $run2 = "Shell.Application" ascii nocase
        $run3 = "URLDownloadToFile" ascii nocase
        $run4 = "MSXML2.XMLHTTP" ascii nocase
        $run5 = "WinHttp.WinHttpRequest" ascii nocase
        $run6 = "ADODB.Stream" ascii nocase
        $run7 = "powershell" ascii nocase
        $run8 = "CreateProcess" ascii nocase
        $run9 = "Win32_Process" ascii nocase
        $run10 = "ShellExecute" ascii nocase
    condition:
        (mw_ole_container or mw_vba_project) and mw_vba_project
        and any of ($auto*) and any of ($run*)
}

rule mw_macro_autoexec
{
    meta:
        description = "Office macro that runs by itself when the document opens or closes"
        severity = "suspicious"
        category = "malware"
    strings:
        $auto1 = "AutoOpen" ascii nocase
        $auto2 = "Document_Open" ascii nocase
        $auto3 = "Workbook_Open" ascii nocase
        $auto4 = "Auto_Open" ascii nocase
        $auto5 = "AutoExec" ascii nocase
    condition:
        mw_vba_project and any of them
}

rule mw_xlm_macro_sheet_exec
{
    meta:
        description = "Excel 4 (XLM) macro sheet that calls EXEC, CALL or REGISTER"
        severity = "malicious"
        category = "malware"
    strings:
        $sheet = "Macro1" wide ascii
        $auto = "Auto_Open" wide ascii nocase
        $exec = "EXEC(" ascii nocase
        $call = "CALL(" ascii nocase
        $register = "REGISTER(" ascii nocase
        $urlmon = "URLMON" ascii nocase
    condition:
        mw_ole_container and ($sheet or $auto) and ($exec or $call or $register)
        and ($urlmon or $exec)
}
