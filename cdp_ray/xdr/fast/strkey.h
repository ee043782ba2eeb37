/*
 * strkey.h: Stellar strkey text (unpadded base32 of version byte, payload and CRC16-XModem checksum),
 * shared by the C extensions; each calls crc16_init() once when its module is created.
 */
#ifndef CDP_RAY_STRKEY_H
#define CDP_RAY_STRKEY_H

#include <Python.h>
#include <stdint.h>

/* strkey version bytes: G, C, M, B, L */
enum { SK_ACCOUNT = 6 << 3, SK_CONTRACT = 2 << 3, SK_MUXED = 12 << 3, SK_BALANCE = 1 << 3, SK_POOL = 11 << 3 };

static const char B32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
static uint16_t crc16_table[256];

static inline void
crc16_init(void)
{
    for (int i = 0; i < 256; i++) {
        uint16_t crc = (uint16_t)(i << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
        crc16_table[i] = crc;
    }
}

/* The length of the strkey text of ``n`` bytes of payload. */
static inline Py_ssize_t
strkey_length(Py_ssize_t n)
{
    return ((n + 3) * 8 + 4) / 5;
}

/* Write the strkey text of ``n`` bytes of payload ``q`` with ``version`` (0-255) to ``out``
   (strkey_length(n) bytes). */
static inline void
strkey_write(char *out, unsigned version, const unsigned char *q, Py_ssize_t n)
{
    Py_ssize_t total = n + 3;
    uint16_t crc = crc16_table[version];
    for (Py_ssize_t i = 0; i < n; i++)
        crc = (uint16_t)(crc << 8) ^ crc16_table[(crc >> 8) ^ q[i]];
    uint32_t bits = 0;
    int nbits = 0;
    for (Py_ssize_t i = 0; i < total; i++) {
        unsigned b = i == 0 ? version : i <= n ? q[i - 1] : i == n + 1 ? (crc & 0xff) : (crc >> 8);
        bits = (bits << 8) | b;
        nbits += 8;
        while (nbits >= 5) {
            nbits -= 5;
            *out++ = B32[(bits >> nbits) & 31];
        }
        bits &= (1u << nbits) - 1;
    }
    if (nbits > 0)
        *out++ = B32[(bits << (5 - nbits)) & 31];
}

/* Strkey text of ``n`` bytes of payload ``q`` with ``version`` (0-255). */
static inline PyObject *
strkey_text(unsigned version, const unsigned char *q, Py_ssize_t n)
{
    PyObject *text = (n > (PY_SSIZE_T_MAX - 4) / 8 - 3) ? PyErr_NoMemory() : PyUnicode_New(strkey_length(n), 127);
    if (text != NULL)
        strkey_write((char *)PyUnicode_1BYTE_DATA(text), version, q, n);
    return text;
}

#endif
