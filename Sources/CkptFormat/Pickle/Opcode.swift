/// Every pickle opcode of protocols 0–5 (CPython `Lib/pickletools.py`), as one table: the case
/// name is the opcode's name, the raw value its byte. Names for messages are derived from the
/// cases, so the table exists once.
enum Opcode: UInt8, CaseIterable, Sendable {
    case MARK = 0x28, STOP = 0x2E, POP = 0x30, POP_MARK = 0x31, DUP = 0x32
    case FLOAT = 0x46, INT = 0x49, BININT = 0x4A, BININT1 = 0x4B, LONG = 0x4C, BININT2 = 0x4D
    case NONE = 0x4E, PERSID = 0x50, BINPERSID = 0x51, REDUCE = 0x52, STRING = 0x53
    case BINSTRING = 0x54, SHORT_BINSTRING = 0x55, UNICODE = 0x56, BINUNICODE = 0x58
    case APPEND = 0x61, BUILD = 0x62, GLOBAL = 0x63, DICT = 0x64, EMPTY_DICT = 0x7D
    case APPENDS = 0x65, GET = 0x67, BINGET = 0x68, INST = 0x69, LONG_BINGET = 0x6A
    case LIST = 0x6C, EMPTY_LIST = 0x5D, OBJ = 0x6F, PUT = 0x70, BINPUT = 0x71
    case LONG_BINPUT = 0x72, SETITEM = 0x73, TUPLE = 0x74, EMPTY_TUPLE = 0x29, SETITEMS = 0x75
    case BINFLOAT = 0x47
    case PROTO = 0x80, NEWOBJ = 0x81, EXT1 = 0x82, EXT2 = 0x83, EXT4 = 0x84
    case TUPLE1 = 0x85, TUPLE2 = 0x86, TUPLE3 = 0x87, NEWTRUE = 0x88, NEWFALSE = 0x89
    case LONG1 = 0x8A, LONG4 = 0x8B
    case BINBYTES = 0x42, SHORT_BINBYTES = 0x43
    case SHORT_BINUNICODE = 0x8C, BINUNICODE8 = 0x8D, BINBYTES8 = 0x8E, EMPTY_SET = 0x8F
    case ADDITEMS = 0x90, FROZENSET = 0x91, NEWOBJ_EX = 0x92, STACK_GLOBAL = 0x93, MEMOIZE = 0x94
    case FRAME = 0x95, BYTEARRAY8 = 0x96, NEXT_BUFFER = 0x97, READONLY_BUFFER = 0x98

    /// The opcode's name as pickletools prints it.
    var name: String { String(describing: self) }

    /// The 34 opcodes torch 2.15's `weights_only` unpickler accepts; any other makes it fail
    /// with "Unsupported operand".
    static let acceptedByTorchWeightsOnly: Set<Opcode> = [
        .PROTO, .STOP, .GLOBAL, .REDUCE, .NEWOBJ, .BUILD, .BINPERSID, .MARK, .TUPLE, .TUPLE1,
        .TUPLE2, .TUPLE3, .EMPTY_TUPLE, .EMPTY_LIST, .APPEND, .APPENDS, .EMPTY_DICT, .SETITEM,
        .SETITEMS, .EMPTY_SET, .NONE, .NEWTRUE, .NEWFALSE, .BININT, .BININT1, .BININT2, .LONG1,
        .BINFLOAT, .BINUNICODE, .SHORT_BINSTRING, .BINPUT, .LONG_BINPUT, .BINGET, .LONG_BINGET,
    ]
}
