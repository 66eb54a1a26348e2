"""The platform's OTA API: signing, protocol, retries, rate budget and the HTTP client."""
