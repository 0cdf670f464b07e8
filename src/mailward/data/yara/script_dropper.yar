/*
 * Script droppers: JScript, VBScript, HTA, WSF, PowerShell and shortcut
 * files whose job is to fetch a second stage and run it.
 */

rule mw_wsh_download_execute
{
    meta:
        description = "Windows Script Host script that downloads a file and runs it"
        severity = "malicious"
        category = "malware"
    strings:
        $obj1 = "ActiveXObject" ascii nocase
        $obj2 = "CreateObject" ascii nocase
        $obj3 = "GetObject" ascii nocase
        $http1 = "MSXML2.XMLHTTP" ascii nocase
        $http2 = "MSXML2.ServerXMLHTTP" ascii nocase
        $http3 = "WinHttp.WinHttpRequest" ascii nocase
        $http4 = "Microsoft.XMLHTTP" ascii nocase
        $save1 = "ADODB.Stream" ascii nocase
        $save2 = "SaveToFile" ascii nocase
        $save3 = "Scripting.FileSystemObject" ascii nocase
        $run1 = "WScript.Shell" ascii nocase
        $run2 = "Shell.Application" ascii nocase
        $run3 = ".Run" ascii nocase
        $run4 = "ShellExecute" ascii nocase
        $run5 = "Win32_Process" ascii nocase
    condition:
        filesize < 5MB and any of ($obj*) and any of ($http*) and any of ($save*)
        and any of ($run*)
}

rule mw_powershell_download_cradle
{
    meta:
        description = "PowerShell that downloads code and runs it in memory"
        severity = "malicious"
        category = "malware"
    strings:
        $ps = "powershell" ascii wide nocase
        $iex1 = "IEX" ascii wide nocase fullword
        $iex2 = "Invoke-Expression" ascii wide nocase
        $dl1 = "DownloadString" ascii wide nocase
        $dl2 = "DownloadData" ascii wide nocase
        $dl3 = "Invoke-WebRequest" ascii wide nocase
        $dl4 = "Net.WebClient" ascii wide nocase
        $dl5 = "Start-BitsTransfer" ascii wide nocase
    condition:
        filesize < 5MB and any of ($iex*) and any of ($dl*) and ($ps or $dl4)
}

rule mw_powershell_encoded_hidden
{
    meta:
        description = "PowerShell started hidden with an encoded command"
        severity = "malicious"
        category = "malware"
    strings:
        $ps = "powershell" ascii wide nocase
        $enc = /\s-e(nc|ncodedcommand)?\s+[A-Za-z0-9+\/=]{40}/ ascii wide nocase
        $hidden = /-w(indowstyle)?\s+h(idden)?/ ascii wide nocase
    condition:
        filesize < 5MB and $ps and $enc and $hidden
}

rule mw_lnk_launches_interpreter
{
    meta:
        description = "Windows shortcut (.lnk) whose target runs a script interpreter"
        severity = "malicious"
        category = "malware"
    strings:
        $i1 = "powershell" ascii wide nocase
        $i2 = "mshta" ascii wide nocase
        $i3 = "cmd.exe" ascii wide nocase
        $i4 = "wscript" ascii wide nocase
        $i5 = "cscript" ascii wide nocase
        $i6 = "rundll32" ascii wide nocase
        $i7 = "regsvr32" ascii wide nocase
        $i8 = "bitsadmin" ascii wide nocase
        $i9 = "certutil" ascii wide nocase
    condition:
        uint32(0) == 0x0000004C and uint32(4) == 0x00021401 and any of them
}

rule mw_hta_script_runner
{
    meta:
        description = "HTML application (HTA) that runs a shell command"
        severity = "malicious"
        category = "malware"
    strings:
        $hta = "<hta:application" ascii nocase
        $shell = "WScript.Shell" ascii nocase
        $run = ".Run" ascii nocase
    condition:
        $hta and $shell and $run
}
