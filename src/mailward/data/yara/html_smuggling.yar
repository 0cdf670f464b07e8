/*
 * HTML smuggling: a page that carries a file inside itself (usually as
 * base64), rebuilds it in the browser and hands it to the user as a
 * download, so that the mail filter only ever sees a web page.
 */

private rule mw_html_document
{
    strings:
        $html = "<html" ascii nocase
        $script = "<script" ascii nocase
        $svg = "<svg" ascii nocase
    condition:
        any of them
}

rule mw_html_smuggling_blob_download
{
    meta:
        description = "HTML that decodes an embedded payload into a Blob and saves it as a download"
        severity = "malicious"
        category = "malware"
    strings:
        $decode1 = "atob(" ascii nocase
        $decode2 = "base64ToArrayBuffer" ascii nocase
        $decode3 = "Uint8Array" ascii
        $decode4 = "charCodeAt" ascii
        $blob = "new Blob" ascii nocase
        $save1 = "createObjectURL" ascii nocase
        $save2 = "msSaveOrOpenBlob" ascii nocase
        $save3 = "msSaveBlob" ascii nocase
        $download1 = ".download" ascii nocase
        $download2 = "download=" ascii nocase
        $download3 = "setAttribute(\"download\"" ascii nocase
        $download4 = "setAttribute('download'" ascii nocase
    condition:
        mw_html_document and any of ($decode*) and $blob and any of ($save*)
        and (any of ($download*) or $save2 or $save3)
}

rule mw_html_data_uri_download
{
    meta:
        description = "HTML link that downloads an archive or program from an inline data: URI"
        severity = "malicious"
        category = "malware"
    strings:
        $zip = /href\s*=\s*["']?data:application\/(zip|x-zip-compressed|octet-stream|x-msdownload|x-iso9660-image|vnd\.ms-cab-compressed)[;,]/ nocase
        $download = "download" ascii nocase
    condition:
        mw_html_document and $zip and $download
}

rule mw_html_long_base64_decoder
{
    meta:
        description = "HTML that decodes a very long embedded base64 string in script"
        severity = "suspicious"
        category = "malware"
    strings:
        $atob = "atob(" ascii nocase
        $b64 = /["'][A-Za-z0-9+\/]{4096}/
    condition:
        mw_html_document and $atob and $b64
}
