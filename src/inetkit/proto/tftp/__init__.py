"""TFTP protocol cores (sans-IO): packet codec, option negotiation, netascii
and the sender/receiver state machines shared by the server and the client.

RFC 1350 (protocol), RFC 2347 (option extension), RFC 2348 (blksize),
RFC 2349 (timeout, tsize), RFC 7440 (windowsize).
"""
