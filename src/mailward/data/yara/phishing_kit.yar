/*
 * Credential phishing pages sent as attachments: a local HTML file that
 * imitates a sign-in page and posts what is typed to a collector.
 */

private rule mw_password_form
{
    strings:
        $form = "<form" ascii nocase
        $password1 = /type\s*=\s*["']?password/ ascii nocase
        $password2 = "name=\"pass" ascii nocase
        $password3 = "name=\"pwd" ascii nocase
    condition:
        $form and any of ($password*)
}

rule mw_phish_telegram_exfiltration
{
    meta:
        description = "Page that sends what is typed into it to a Telegram bot"
        severity = "malicious"
        category = "phish"
    strings:
        $api = "api.telegram.org/bot" ascii nocase
        $send1 = "sendMessage" ascii nocase
        $send2 = "chat_id" ascii nocase
        $field1 = /type\s*=\s*["']?password/ ascii nocase
        $field2 = "password" ascii nocase
    condition:
        $api and any of ($send*) and any of ($field*)
}

rule mw_phish_login_posts_to_collector
{
    meta:
        description = "Local sign-in page whose form posts to a script on another site"
        severity = "malicious"
        category = "phish"
    strings:
        $action = /<form[^>]{0,300}action\s*=\s*["']?https?:\/\/[^"' >]{1,200}\.(php|asp|aspx)/ ascii nocase
        $brand1 = "Microsoft" ascii nocase
        $brand2 = "Office 365" ascii nocase
        $brand3 = "Outlook" ascii nocase
        $brand4 = "OneDrive" ascii nocase
        $brand5 = "SharePoint" ascii nocase
        $brand6 = "Adobe" ascii nocase
        $brand7 = "DocuSign" ascii nocase
        $brand8 = "Webmail" ascii nocase
        $brand9 = "Dropbox" ascii nocase
        $signin1 = "sign in" ascii nocase
        $signin2 = "log in" ascii nocase
        $signin3 = "login" ascii nocase
        $signin4 = "verify your" ascii nocase
    condition:
        mw_password_form and $action and any of ($brand*) and any of ($signin*)
}

rule mw_phish_prefilled_victim_script_post
{
    meta:
        description = "Sign-in page that fills in the victim's address and posts the password by script"
        severity = "suspicious"
        category = "phish"
    strings:
        $ajax1 = "$.ajax" ascii nocase
        $ajax2 = "XMLHttpRequest" ascii
        $ajax3 = "fetch(" ascii
        $post = /type\s*:\s*["']POST["']|method\s*:\s*["']POST["']|\.open\(\s*["']POST["']/ ascii nocase
        $email = /value\s*=\s*["'][A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,200}\.[A-Za-z]{2,}["']/ ascii
        $b64email = /window\.location\.hash|atob\(\s*window\.location/ ascii nocase
    condition:
        mw_password_form and any of ($ajax*) and $post and ($email or $b64email)
}
