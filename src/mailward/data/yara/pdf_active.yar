/*
 * PDF documents that act on opening: run JavaScript or launch a program.
 */

rule mw_pdf_launch_action
{
    meta:
        description = "PDF with a Launch action that starts a program"
        severity = "malicious"
        category = "malware"
    strings:
        $launch = "/Launch" ascii
        $exe1 = ".exe" ascii nocase
        $exe2 = "cmd" ascii nocase
        $exe3 = "powershell" ascii nocase
    condition:
        uint32be(0) == 0x25504446 and $launch and any of ($exe*)
}

rule mw_pdf_openaction_javascript
{
    meta:
        description = "PDF that runs JavaScript when it is opened"
        severity = "suspicious"
        category = "malware"
    strings:
        $open1 = "/OpenAction" ascii
        $open2 = "/AA" ascii
        $js1 = "/JavaScript" ascii
        $js2 = "/JS" ascii
    condition:
        uint32be(0) == 0x25504446 and any of ($open*) and any of ($js*)
}
