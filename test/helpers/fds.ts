import fs from 'node:fs';

/** This process's open descriptors other than sockets (a client's keep-alive connections come and go). */
export function openFds(): number {
  return fs.readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return !fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith('socket:');
    } catch {
      return false; // (the descriptor readdir itself used)
    }
  }).length;
}
