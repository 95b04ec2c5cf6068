/**
 * Golden-bytes tests for the CS3 wire traps named in the fact sheet (/work/shared/cs3-spec.md).
 *
 * Every expected byte string below was derived BY HAND from the fact sheet's field numbers and the
 * protobuf wire format (tag = field_number << 3 | wire_type; wire type 0 = varint, 2 = LEN; varints are
 * little-endian groups of 7 bits with the high bit as "more follows"). None of them was produced by
 * running the encoder. Each case checks (a) encode(fromPartial(obj)) === bytes exactly and (b)
 * decode(bytes) gives the object back.
 */
import { describe, expect, it } from 'vitest';
import { GroupType } from '../../src/cs3/gen/cs3/identity/group/v1beta1/resources.js';
import { UserType } from '../../src/cs3/gen/cs3/identity/user/v1beta1/resources.js';
import { Code } from '../../src/cs3/gen/cs3/rpc/v1beta1/code.js';
import { Status } from '../../src/cs3/gen/cs3/rpc/v1beta1/status.js';
import {
  DeleteResponse,
  InitiateFileUploadRequest,
  ListFileVersionsResponse,
  StatResponse,
} from '../../src/cs3/gen/cs3/storage/provider/v1beta1/provider_api.js';
import {
  FileVersion,
  Grantee,
  GranteeType,
  ResourcePermissions,
} from '../../src/cs3/gen/cs3/storage/provider/v1beta1/resources.js';
import {
  CreateStorageSpaceResponse,
  ListStorageSpacesResponse,
} from '../../src/cs3/gen/cs3/storage/provider/v1beta1/spaces_api.js';
import { Timestamp } from '../../src/cs3/gen/cs3/types/v1beta1/types.js';

interface Codec<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(input: Uint8Array): T;
}

/** Parses hex written as space-separated bytes, possibly over several lines. */
function hex(...parts: string[]): Uint8Array {
  const tokens = parts.join(' ').trim().split(/\s+/);
  return Uint8Array.from(
    tokens.map((t) => {
      if (!/^[0-9a-f]{2}$/i.test(t)) throw new Error(`bad hex byte ${t}`);
      return Number.parseInt(t, 16);
    }),
  );
}

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
}

/** (a) encoding gives exactly `expected`; (b) decoding `expected` gives the message back. */
function expectGolden<T>(codec: Codec<T>, message: T, expected: Uint8Array): void {
  expect(toHex(codec.encode(message).finish())).toBe(toHex(expected));
  expect(codec.decode(expected)).toEqual(message);
}

const ascii = (s: string) => Buffer.from(s, 'latin1');

// Shared fragment: Opaque { map: { k: OpaqueEntry { decoder: "plain", value: "v" } } }
//   OpaqueEntry  = 0a 05 70 6c 61 69 6e   // 1 decoder LEN 5 "plain"
//                  12 01 76               // 2 value LEN 1 "v"               -> 10 bytes (0x0a)
//   map entry    = 0a 01 6b               // 1 key LEN 1 "k"
//                  12 0a <OpaqueEntry>    // 2 value LEN 10                  -> 15 bytes (0x0f)
//   Opaque       = 0a 0f <map entry>      // 1 map (repeated entry) LEN 15   -> 17 bytes (0x11)
const OPAQUE_K = '0a 0f 0a 01 6b 12 0a 0a 05 70 6c 61 69 6e 12 01 76';
const opaqueK = { map: { k: { decoder: 'plain', value: ascii('v') } } };

describe('CS3 golden bytes: SpacesAPI responses are opaque=1, status=2', () => {
  it('ListStorageSpacesResponse', () => {
    expectGolden(
      ListStorageSpacesResponse,
      ListStorageSpacesResponse.fromPartial({ opaque: opaqueK, status: { code: Code.CODE_OK } }),
      hex(
        '0a 11', // 1 opaque LEN 17
        OPAQUE_K,
        '12 02', // 2 status LEN 2
        '08 01', //   Status.1 code varint 1 (CODE_OK)
      ),
    );
  });

  it('CreateStorageSpaceResponse (with storage_space=3)', () => {
    expectGolden(
      CreateStorageSpaceResponse,
      CreateStorageSpaceResponse.fromPartial({
        opaque: opaqueK,
        status: { code: Code.CODE_OK },
        storageSpace: { id: { opaqueId: 's' }, spaceType: 'personal' },
      }),
      hex(
        '0a 11', // 1 opaque LEN 17
        OPAQUE_K,
        '12 02 08 01', // 2 status LEN 2: code=1
        '1a 0f', // 3 storage_space LEN 15
        '12 03 0a 01 73', //   StorageSpace.2 id LEN 3: StorageSpaceId.1 opaque_id LEN 1 "s"
        '3a 08 70 65 72 73 6f 6e 61 6c', //   StorageSpace.7 space_type LEN 8 "personal"
      ),
    );
  });

  it('contrast: ProviderAPI responses are status=1, opaque=2 (DeleteResponse, StatResponse)', () => {
    expectGolden(
      DeleteResponse,
      DeleteResponse.fromPartial({ status: { code: Code.CODE_OK }, opaque: opaqueK }),
      hex(
        '0a 02 08 01', // 1 status LEN 2: code=1
        '12 11', // 2 opaque LEN 17
        OPAQUE_K,
      ),
    );
    // status only: 0a 02 08 01 on ProviderAPI, 12 02 08 01 on SpacesAPI
    expectGolden(
      StatResponse,
      StatResponse.fromPartial({ status: { code: Code.CODE_OK } }),
      hex('0a 02 08 01'),
    );
    expectGolden(
      ListStorageSpacesResponse,
      ListStorageSpacesResponse.fromPartial({ status: { code: Code.CODE_OK } }),
      hex('12 02 08 01'),
    );
  });

  it('contrast: ProviderAPI bytes read as a Spaces response lose the status', () => {
    // 0a 02 08 01 parsed as ListStorageSpacesResponse: field 1 is now `opaque`; inside it 08 01 is an
    // unknown varint field 1 (map entries are LEN), so it is skipped. No status at all.
    const misread = ListStorageSpacesResponse.decode(hex('0a 02 08 01'));
    expect(misread.status).toBeUndefined();
    expect(misread.opaque).toEqual({ map: {} });
  });
});

describe('CS3 golden bytes: cs3.types.v1beta1.Timestamp is unsigned', () => {
  it('seconds beyond 2^32 and nanos 999999999', () => {
    // seconds 4294967301 = 2^32 + 5: 7-bit groups (LSB first) 5, 0, 0, 0, 2^32>>28 = 0x10
    //   -> 85 80 80 80 10
    // nanos 999999999 = 0x3b9ac9ff: groups 127, 19, 107, 92, 3 -> ff 93 eb dc 03
    expectGolden(
      Timestamp,
      Timestamp.fromPartial({ seconds: 4294967301, nanos: 999999999 }),
      hex(
        '08 85 80 80 80 10', // 1 seconds varint 4294967301
        '10 ff 93 eb dc 03', // 2 nanos varint 999999999
      ),
    );
  });

  it('largest safe seconds and uint32 max nanos stay short, positive varints', () => {
    // seconds 2^53-1 = 53 one-bits = 7 full groups (ff x7) + 4 bits (0f): no sign extension.
    // nanos 2^32-1 as uint32 = ff ff ff ff 0f (5 bytes); an int32 -1 would be 10 bytes ending 01.
    expectGolden(
      Timestamp,
      Timestamp.fromPartial({ seconds: Number.MAX_SAFE_INTEGER, nanos: 4294967295 }),
      hex(
        '08 ff ff ff ff ff ff ff 0f', // 1 seconds varint 9007199254740991
        '10 ff ff ff ff 0f', // 2 nanos varint 4294967295
      ),
    );
  });

  it('a varint with bit 63 set is never decoded as a negative number', () => {
    // 08 + 2^63 as varint: nine 0x80 groups then 01. As int64 this would be -2^63.
    const bytes = hex('08 80 80 80 80 80 80 80 80 80 01');
    expect(() => Timestamp.decode(bytes)).toThrow(/larger than/);
  });

  it('negative seconds are rejected by the encoder (uint64)', () => {
    expect(() => Timestamp.encode(Timestamp.fromPartial({ seconds: -1 })).finish()).toThrow();
  });
});

describe('CS3 golden bytes: Grantee oneof (user_id=3, group_id=4, no field 2)', () => {
  it('user grantee', () => {
    expectGolden(
      Grantee,
      Grantee.fromPartial({
        type: GranteeType.GRANTEE_TYPE_USER,
        userId: { idp: 'i', opaqueId: 'u1', type: UserType.USER_TYPE_PRIMARY },
      }),
      hex(
        '08 01', // 1 type varint 1 (GRANTEE_TYPE_USER)
        '1a 09', // 3 user_id LEN 9
        '0a 01 69', //   UserId.1 idp "i"
        '12 02 75 31', //   UserId.2 opaque_id "u1"
        '18 01', //   UserId.3 type 1 (USER_TYPE_PRIMARY)
      ),
    );
  });

  it('group grantee', () => {
    expectGolden(
      Grantee,
      Grantee.fromPartial({
        type: GranteeType.GRANTEE_TYPE_GROUP,
        groupId: { opaqueId: 'g1', type: GroupType.GROUP_TYPE_REGULAR },
      }),
      hex(
        '08 02', // 1 type varint 2 (GRANTEE_TYPE_GROUP)
        '22 06', // 4 group_id LEN 6
        '12 02 67 31', //   GroupId.2 opaque_id "g1"
        '18 01', //   GroupId.3 type 1 (GROUP_TYPE_REGULAR)
      ),
    );
  });
});

describe('CS3 golden bytes: FileVersion (key=3, size=4, mtime=5 uint64 seconds, etag=6)', () => {
  // size 1234 = 9*128 + 82 -> d2 09
  // mtime 1700000000 -> groups 0, 98, 79, 42, 6 -> 80 e2 cf aa 06
  //   (6*128^4 + 42*128^3 + 79*128^2 + 98*128 + 0 = 1700000000)
  const FV = [
    '1a 02 76 31', // 3 key LEN 2 "v1"
    '20 d2 09', // 4 size varint 1234
    '28 80 e2 cf aa 06', // 5 mtime varint 1700000000 (NOT a LEN Timestamp message)
    '32 05 22 61 62 63 22', // 6 etag LEN 5 "\"abc\""
  ]; // 4 + 3 + 6 + 7 = 20 bytes (0x14)
  const fv = { key: 'v1', size: 1234, mtime: 1700000000, etag: '"abc"' };

  it('FileVersion', () => {
    expectGolden(FileVersion, FileVersion.fromPartial(fv), hex(...FV));
  });

  it('inside ListFileVersionsResponse (versions=3)', () => {
    expectGolden(
      ListFileVersionsResponse,
      ListFileVersionsResponse.fromPartial({ status: { code: Code.CODE_OK }, versions: [fv] }),
      hex(
        '0a 02 08 01', // 1 status LEN 2: code=1
        '1a 14', // 3 versions LEN 20
        ...FV,
      ),
    );
  });
});

describe('CS3 golden bytes: ResourcePermissions (no field 4)', () => {
  it('get_path is field 5, not 4', () => {
    expectGolden(
      ResourcePermissions,
      ResourcePermissions.fromPartial({ getPath: true }),
      hex('28 01'), // 5<<3|0 = 0x28, true
    );
  });

  it('stat=18 and deny_grant=20 need two-byte tags', () => {
    expectGolden(
      ResourcePermissions,
      ResourcePermissions.fromPartial({ stat: true }),
      hex('90 01 01'), // 18<<3|0 = 144 = 0x90 -> varint 90 01; value 01
    );
    expectGolden(
      ResourcePermissions,
      ResourcePermissions.fromPartial({
        delete: true,
        getPath: true,
        getQuota: true,
        stat: true,
        updateGrant: true,
        denyGrant: true,
      }),
      hex(
        '18 01', // 3 delete
        '28 01', // 5 get_path
        '30 01', // 6 get_quota
        '90 01 01', // 18 stat (144 -> 90 01)
        '98 01 01', // 19 update_grant (152 -> 98 01)
        'a0 01 01', // 20 deny_grant (160 -> a0 01)
      ),
    );
  });

  it('a field 4 on the wire is unknown and sets nothing', () => {
    expect(ResourcePermissions.decode(hex('20 01'))).toEqual(ResourcePermissions.fromPartial({}));
  });
});

describe('CS3 golden bytes: Status (InnerError=5, codes 19/20/21)', () => {
  it('LOCKED with message and InnerError', () => {
    expectGolden(
      Status,
      Status.fromPartial({
        code: Code.CODE_LOCKED,
        message: 'locked',
        InnerError: { decoder: 'plain', value: ascii('lock held') },
      }),
      hex(
        '08 14', // 1 code varint 20 (CODE_LOCKED)
        '12 06 6c 6f 63 6b 65 64', // 2 message LEN 6 "locked"
        '2a 12', // 5 InnerError LEN 18
        '0a 05 70 6c 61 69 6e', //   OpaqueEntry.1 decoder "plain"
        '12 09 6c 6f 63 6b 20 68 65 6c 64', //   OpaqueEntry.2 value "lock held"
      ),
    );
  });

  it('INSUFFICIENT_STORAGE with trace=3 and target_uri=4', () => {
    expectGolden(
      Status,
      Status.fromPartial({ code: Code.CODE_INSUFFICIENT_STORAGE, trace: 't', targetUri: 'u' }),
      hex(
        '08 13', // 1 code varint 19
        '1a 01 74', // 3 trace "t"
        '22 01 75', // 4 target_uri "u"
      ),
    );
  });

  it('TOO_EARLY DeleteResponse with opaque status=processing (OpenCloud post-processing)', () => {
    expectGolden(
      DeleteResponse,
      DeleteResponse.fromPartial({
        status: { code: Code.CODE_TOO_EARLY },
        opaque: { map: { status: { decoder: 'plain', value: ascii('processing') } } },
      }),
      hex(
        '0a 02 08 15', // 1 status LEN 2: code varint 21 (CODE_TOO_EARLY)
        '12 1f', // 2 opaque LEN 31
        '0a 1d', //   Opaque.1 map entry LEN 29
        '0a 06 73 74 61 74 75 73', //     key "status"
        '12 13', //     value LEN 19
        '0a 05 70 6c 61 69 6e', //       decoder "plain"
        '12 0a 70 72 6f 63 65 73 73 69 6e 67', //       value "processing"
      ),
    );
  });
});

describe('CS3 golden bytes: InitiateFileUploadRequest options oneof', () => {
  const REF = '12 04 12 02 2f 61'; // 2 ref LEN 4: Reference.2 path LEN 2 "/a"

  it('if_not_exist=3 (bool); a set oneof member is emitted even when false', () => {
    expectGolden(
      InitiateFileUploadRequest,
      InitiateFileUploadRequest.fromPartial({ ref: { path: '/a' }, ifNotExist: true }),
      hex(REF, '18 01'), // 3 if_not_exist varint 1
    );
    expectGolden(
      InitiateFileUploadRequest,
      InitiateFileUploadRequest.fromPartial({ ref: { path: '/a' }, ifNotExist: false }),
      hex(REF, '18 00'), // 3 if_not_exist varint 0: oneof fields have explicit presence
    );
  });

  it('if_match=4 (string) with lock_id=5', () => {
    expectGolden(
      InitiateFileUploadRequest,
      InitiateFileUploadRequest.fromPartial({ ref: { path: '/a' }, ifMatch: '"e1"', lockId: 'L1' }),
      hex(
        REF,
        '22 04 22 65 31 22', // 4 if_match LEN 4 "\"e1\""
        '2a 02 4c 31', // 5 lock_id LEN 2 "L1"
      ),
    );
  });

  it('if_unmodified_since=6 (Timestamp message)', () => {
    expectGolden(
      InitiateFileUploadRequest,
      InitiateFileUploadRequest.fromPartial({
        ref: { path: '/a' },
        ifUnmodifiedSince: { seconds: 1700000000 },
      }),
      hex(
        REF,
        '32 06', // 6 if_unmodified_since LEN 6
        '08 80 e2 cf aa 06', //   Timestamp.1 seconds varint 1700000000
      ),
    );
  });

  it('if_unmodified_since=6 with lock_id=5: either field order decodes the same', () => {
    const msg = InitiateFileUploadRequest.fromPartial({
      ref: { path: '/a' },
      ifUnmodifiedSince: { seconds: 1700000000 },
      lockId: 'L1',
    });
    // ts-proto writes fields in .proto declaration order (oneof options, then lock_id = 5), so field 6
    // precedes field 5. Valid protobuf, but not the field-number order protoc/Go emit.
    const declarationOrder = hex(REF, '32 06 08 80 e2 cf aa 06', '2a 02 4c 31');
    // Field-number order (what a Go gateway sends).
    const numberOrder = hex(REF, '2a 02 4c 31', '32 06 08 80 e2 cf aa 06');
    expectGolden(InitiateFileUploadRequest, msg, declarationOrder);
    expect(InitiateFileUploadRequest.decode(numberOrder)).toEqual(msg);
  });
});

describe('CS3 golden bytes: forward compatibility (unknown fields are skipped)', () => {
  it('StatResponse with an unknown field 99 varint and field 100 LEN appended', () => {
    // 99<<3|0 = 792 = 6*128 + 24 -> 98 06; value 42 = 2a
    // 100<<3|2 = 802 = 6*128 + 34 -> a2 06; LEN 2 "hi"
    const bytes = hex('0a 02 08 01', '98 06 2a', 'a2 06 02 68 69');
    expect(StatResponse.decode(bytes)).toEqual(StatResponse.fromPartial({ status: { code: Code.CODE_OK } }));
  });

  it('newer ResourcePermissions bit 21 (delete_container) is ignored, known bits survive', () => {
    // 21<<3|0 = 168 -> a8 01
    const bytes = hex('90 01 01', 'a8 01 01');
    expect(ResourcePermissions.decode(bytes)).toEqual(ResourcePermissions.fromPartial({ stat: true }));
  });

  it('unknown field inside a nested message (Status field 9) does not disturb the outer message', () => {
    // ListStorageSpacesResponse: 2 status LEN 4: code=1, field 9 varint (9<<3 = 0x48) 7;
    // then 4 next_page_token LEN 1 "x"
    const bytes = hex('12 04 08 01 48 07', '22 01 78');
    expect(ListStorageSpacesResponse.decode(bytes)).toEqual(
      ListStorageSpacesResponse.fromPartial({ status: { code: Code.CODE_OK }, nextPageToken: 'x' }),
    );
  });

  it('a stray field 2 in FileVersion is skipped', () => {
    const bytes = hex('12 01 78', '1a 02 76 31'); // 2 LEN "x" (undefined), 3 key "v1"
    expect(FileVersion.decode(bytes)).toEqual(FileVersion.fromPartial({ key: 'v1' }));
  });
});
